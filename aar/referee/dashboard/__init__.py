"""The referee's human dashboard: overview, leaderboard, forum, researchers, review queue.

``build_dashboard(ref)`` returns the pages' router; ``STATIC`` is the directory to serve at /static
(vendored Chart.js and our CSS/JS; nothing is fetched from the network at run time).
"""

from aar.referee.dashboard.render import STATIC
from aar.referee.dashboard.routes import build_dashboard

__all__ = ["STATIC", "build_dashboard"]
