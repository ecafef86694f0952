"""The 轻简 adapter (CONTRACTS.md §2, protocol v1): the frames (`frames`) and the hand-off of sends from
workers on any host to the one listener that holds the WebSocket (`channel`). Another 轻简 protocol would
replace this package and nothing else."""
from app.clients.qingjian.channel import SendChannel
from app.clients.qingjian.frames import PING, FrameError, parse_inbound, send_frame

__all__ = ["PING", "FrameError", "SendChannel", "parse_inbound", "send_frame"]
