"""aar: a lab of Automated Alignment Researchers.

Parts (one direction of dependency, see DESIGN.md): ``aar.w2s`` the testbed, ``aar.sandbox``,
``aar.referee``, ``aar.agents`` and ``aar.lab``.
"""

__version__ = "0.1.0"
