"""/api/dispatch/*: hand a customer over to a human designer through 图绘 (CONTRACTS.md §1, §3)."""
from __future__ import annotations

from flask.views import MethodView
from flask_smorest import Blueprint, abort

from app import runtime
from app.api.answers import DispatchAcceptedEnvelope, DispatchEnvelope, answer
from app.api.errors import envelope
from app.domain import dispatch as flow
from app.schemas import DispatchTransferSchema, EnvelopeSchema
from app.services import dispatch
from app.views import dispatch_view

blp = Blueprint("dispatch", __name__, url_prefix="/api/dispatch", description="Hand-overs to designers (图绘)")


@blp.route("/transfer")
class DispatchTransfer(MethodView):
    @blp.arguments(DispatchTransferSchema)
    @blp.response(202, DispatchAcceptedEnvelope)
    @blp.alt_response(422, schema=EnvelopeSchema, description="validation failed")
    def post(self, args):
        """Start a dispatch: find a designer, create and assign the 图绘 task, tell the group and the customer."""
        settings = runtime.current().settings
        acc_id = args.get("acc_id") or None
        if not acc_id and not settings.qingjian_default_acc_id:
            return envelope(422, "validation failed", None,
                            {"acc_id": ["required: no QINGJIAN_DEFAULT_ACC_ID is configured"]})
        dispatch_id = dispatch.start(args["customer_id"].strip(), acc_id=acc_id, acc_type=args.get("acc_type"),
                                     image_url=args.get("image_url"), reason=args.get("reason"))
        return answer(202, "派单已接收", {"dispatch_id": dispatch_id, "status": flow.PENDING})


@blp.route("/<string(maxlength=36):dispatch_id>")
class DispatchRecord(MethodView):
    @blp.response(200, DispatchEnvelope)
    def get(self, dispatch_id):
        """The dispatch record and its steps."""
        found = dispatch.get(dispatch_id)
        if found is None:
            abort(404, message=f"dispatch {dispatch_id} not found")
        record, steps = found
        return answer(200, "OK", dispatch_view(record, steps, runtime.current().settings.app_timezone))
