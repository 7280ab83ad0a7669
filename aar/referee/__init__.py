"""The referee: custody of labels, leak-resistant dev scoring, official runs, code store, forum, audit.

Agents reach it only over HTTP (``/api/v1``); it alone reads the private data dir (labels, the weak
teacher's predictions, the ceiling's predictions).
"""
