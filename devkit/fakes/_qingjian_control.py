"""The 轻简 fake's HTTP control API, so a human running the demo can make a customer speak."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from devkit.fakes._http import FakeHTTPServer, Request, json_body

if TYPE_CHECKING:
    from devkit.fakes.qingjian import FakeQingjian


class Control(FakeHTTPServer):
    label = "轻简 fake control"
    _FIELDS = {"say": ("from_id", "content", "from_name", "acc_id", "msg_type", "msg_id", "ts"),
               "pay": ("from_id", "order_id", "amount", "from_name", "acc_id", "msg_id", "ts"),
               "order": ("from_id", "order_id", "from_name", "acc_id", "msg_id", "ts")}

    def __init__(self, qingjian: FakeQingjian, port: int, host: str) -> None:
        super().__init__(host, port)
        self.qingjian = qingjian

    def handle(self, request: Request) -> tuple[int, Any]:
        name = request.path.strip("/")
        if request.method == "GET" and name in ("sent", "failed", "frames"):
            with self.qingjian._cond:
                return 200, list(getattr(self.qingjian, name))
        if request.method == "GET" and name == "clients":
            return 200, {"clients": self.qingjian.client_count}
        if request.method == "POST" and name == "drop":
            return 200, {"dropped": self.qingjian.drop_connections()}
        if request.method != "POST" or name not in self._FIELDS:
            return 404, {"error": "use POST /say, /pay, /order, /drop or GET /sent, /failed, /frames, /clients"}
        body, error = json_body(request)
        if error or not isinstance(body, dict):
            return 400, {"error": error or "body must be a JSON object"}
        required = ("from_id", "content") if name == "say" else ("from_id",)
        missing = [k for k in required if not body.get(k)]
        if missing:
            return 422, {"error": f"missing {', '.join(missing)}"}
        kwargs = {k: body[k] for k in self._FIELDS[name] if k in body}
        msg_id = getattr(self.qingjian, name)(**kwargs)
        return 200, {"msg_id": msg_id, "clients": self.qingjian.client_count}
