"""Cold start, each sample in a fresh interpreter: importing fffcpu, and import + first kernel call.

Importing fffcpu must stay free of Numba work (kernels compile lazily). The first call loads the
kernels from Numba's on-disk cache (``cache=True``), or compiles them the very first time after an
install or an edit of fffcpu/kernels.py.
"""


class ColdStart:
    # a few samples: each one is a new process
    repeat = (1, 5, 30.0)
    timeout = 300

    def timeraw_import(self):
        return "import fffcpu"

    def timeraw_first_call_fff(self):
        return """
        import numpy as np
        import fffcpu
        layer = fffcpu.FFF(16, 4, 8, 3, seed=0)
        layer(np.ones((1, 16), dtype=np.float32))
        """

    def timeraw_first_call_neuron_tree(self):
        return """
        import numpy as np
        from fffcpu.neuron_tree import NeuronTreeFFF
        layer = NeuronTreeFFF(16, 8, 3, seed=0)
        layer(np.ones((1, 16), dtype=np.float32))
        """
