"""aar: a lab of Automated Alignment Researchers.

Parts (one direction of dependency, see DESIGN.md): ``aar.w2s`` the testbed, ``aar.sandbox``,
``aar.referee``, ``aar.agents`` and ``aar.lab``.
"""

from aar._threads import limit_blas_threads

limit_blas_threads()  # before numpy loads: one BLAS thread per process (aar._threads says why)

__version__ = "0.1.0"
