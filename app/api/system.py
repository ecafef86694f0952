"""Liveness, readiness and custom events."""
from __future__ import annotations

import time

from flask import current_app
from flask.views import MethodView
from flask_smorest import Blueprint

from app.api.answers import EventAcceptedEnvelope, HealthEnvelope, ReadinessEnvelope, answer
from app.domain.events import InboundEvent
from app.health import readiness
from app.infra.timeutil import iso, utcnow
from app.schemas import CustomEventSchema
from app.services import inbound

blp = Blueprint("system", __name__, url_prefix="/api", description="Health, readiness and events")


@blp.route("/health")
class Health(MethodView):
    @blp.response(200, HealthEnvelope)
    def get(self):
        """Liveness: the web process answers."""
        return answer(200, "OK", {"service": "tianwang-bridge", "version": current_app.config["VERSION"],
                                    "time": iso(utcnow(), current_app.config["SETTINGS"].app_timezone)})


@blp.route("/ready")
class Ready(MethodView):
    @blp.response(200, ReadinessEnvelope)
    @blp.alt_response(503, schema=ReadinessEnvelope, description="a dependency is down")
    def get(self):
        """Readiness: database, Redis, broker, listener and beat heartbeats."""
        checks = readiness()
        code = 200 if all(c["ok"] for c in checks.values()) else 503
        return answer(code, "ready" if code == 200 else "not ready", {"checks": checks}), code


@blp.route("/event")
class CustomEvent(MethodView):
    @blp.arguments(CustomEventSchema)
    @blp.response(202, EventAcceptedEnvelope)
    def post(self, args):
        """Deliver a custom event; matching custom_event tasks fire."""
        event = InboundEvent(kind="custom", event=args["event"], from_id=args.get("customer_id"),
                             acc_id=args.get("acc_id"), data=args.get("data") or {},
                             received_at=time.time())
        inbound.hand_over_custom_event(event)
        return answer(202, "事件已接收", {"event": args["event"]})
