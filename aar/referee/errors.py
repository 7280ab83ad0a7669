"""One exception type for every client error, so routes stay thin and every 4xx carries a message."""

from __future__ import annotations


class ApiError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message
