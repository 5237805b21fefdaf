"""Graph `resultInfo` values the platform reports, in one table, so every code has one meaning.

Codes follow Graph's published list where one exists; the rest are documented in docs/architecture.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class ResultInfo:
    code: int
    subcode: int
    message: str

    def to_wire(self) -> dict[str, Any]:
        return {
            "@odata.type": "#microsoft.graph.resultInfo",
            "code": self.code,
            "subcode": self.subcode,
            "message": self.message,
        }


# Normal endings
ENDED_BY_DELETE = ResultInfo(200, 5001, "The conversation has ended.")
REMOTE_HUNG_UP = ResultInfo(200, 4097, "The remote participant hung up.")
EVERYONE_LEFT = ResultInfo(200, 5002, "Everyone else left the call.")
REMOVED_BY_PARTICIPANT = ResultInfo(200, 5000, "Removed from the meeting by another participant.")
LOBBY_TIMEOUT = ResultInfo(200, 5855, "Removed from the lobby: nobody admitted the participant in time.")
MEETING_TIME_OVER = ResultInfo(200, 5003, "The conversation has ended: the meeting's end time has passed.")
TRANSFER_COMPLETED = ResultInfo(0, 7015, "GracefulTransferCompleted")
CALL_REPLACED = ResultInfo(0, 7015, "GracefulTransferCompleted: the participant moved into another call.")
"""A peer-to-peer call whose far party a participants/invite with replacesCallId moved into a meeting."""
REDIRECTED = ResultInfo(200, 0, "The call was redirected.")
REJECTED_BY_BOT = ResultInfo(200, 0, "The call was rejected.")
ANSWERED_ELSEWHERE = ResultInfo(200, 0, "The call was answered by another target.")

# Failures reported to the caller's leg
DECLINED = ResultInfo(603, 0, "The callee declined the call.")
BUSY = ResultInfo(486, 0, "The callee is busy.")
FORBIDDEN = ResultInfo(403, 0, "The callee refused the call.")
NO_ANSWER = ResultInfo(408, 10057, "The callee did not answer.")
NO_CALLEE_ENDPOINTS = ResultInfo(480, 10037, "The callee has no reachable endpoint.")
CANNOT_ROUTE = ResultInfo(480, 10134, "The call could not be routed.")

# Timers and housekeeping
ANSWER_TIMEOUT = ResultInfo(408, 1106, "The call was not answered in time.")
KEEPALIVE_LAPSED = ResultInfo(408, 8537, "The call was cleaned up because keepAlive was not called in time.")

# Transfer failures (the call stays established)
TRANSFER_FAILED = ResultInfo(500, 7000, "The transfer failed: the target did not accept the call.")
TRANSFER_TARGET_UNREACHABLE = ResultInfo(500, 7700, "The transfer failed: the target could not be reached.")

REJECT_REASONS = {"none": DECLINED, "busy": BUSY, "forbidden": FORBIDDEN}

# Media operations
MEDIA_COMPLETED = ResultInfo(200, 0, "Action completed successfully.")
MEDIA_CANCELLED = ResultInfo(400, 8508, "Action failed, the operation was cancelled.")
RECORD_MAX_DURATION = ResultInfo(200, 8515, "Action completed, max record duration reached.")
RECORD_INITIAL_SILENCE = ResultInfo(200, 0, "Action completed, no speech before the initial silence timeout.")
RECORD_MAX_SILENCE = ResultInfo(200, 0, "Action completed, silence after speech reached the timeout.")
RECORD_STOP_TONE = ResultInfo(200, 0, "Action completed, a stop tone was pressed.")
MEDIA_CALL_ENDED = ResultInfo(410, 9120, "Action failed, the call ended before the operation finished.")
MEDIA_INTERRUPTED = ResultInfo(500, 9121, "Action failed, media processing was interrupted (node restart).")
MEDIA_OVERLOADED = ResultInfo(503, 9122, "Action failed, the media engine has no capacity left for this call.")
MEDIA_RECORDING_FAILED = ResultInfo(500, 9123, "Action failed, the recording could not be stored.")
# 9110: the node's prompt memory budget (quotas.prompt_memory_mb) had no room for this operation's audio
# (reported through PromptFailure.OVER_BUDGET with the exact figures, or PROMPT_BUDGET_EXHAUSTED).
PROMPT_BUDGET_EXHAUSTED = ResultInfo(
    503, 9110, "Action failed, the node's prompt memory budget is exhausted; retry when other prompts have played."
)
# 9111: the call's queued operations would hold more prompt audio than quotas.queued_prompt_mb_per_call.
PROMPT_CALL_QUOTA = ResultInfo(
    413, 9111, "Action failed, the prompts queued on this call exceed the per-call prompt audio quota."
)

# Quotas (calling/quotas.py)
CALLEE_OVER_QUOTA = ResultInfo(486, 9150, "The callee application has reached its concurrent call quota.")

# Calls through the SIP gateway
PSTN_HUNG_UP = ResultInfo(200, 540000, "The PSTN user hung up.")
CALLEE_UNREACHABLE = ResultInfo(480, 10076, "The callee could not be reached.")
MEDIA_LOST = ResultInfo(410, 301005, "Media connectivity failure: no audio from the far end.")
GATEWAY_RESTARTED = ResultInfo(500, 9130, "The gateway restarted and lost this call's signalling.")
TRUNK_FAILED = ResultInfo(502, 9131, "The SIP trunk could not place the call.")
MEDIA_ADDRESS_REFUSED = ResultInfo(488, 9132, "Media setup failed: the far end's media address cannot be used.")
MEDIA_STREAM_FAILED = ResultInfo(500, 9133, "Media failure: the call's RTP stream failed and was stopped.")
# 9134: several nodes (cluster): the node that held this leg's SIP dialog and media stopped (killed, crashed, cut
# off from Redis longer than its lease); another node took the conversation over and ended the leg, since its RTP
# and dialog state lived only there. Bot-to-bot legs (no media) are not ended: they carry on on the new owner.
NODE_LOST = ResultInfo(503, 9134, "The node serving this call's media stopped; another node ended the call.")

# Application-hosted media (the node's WebSocket to the bot's media endpoint; see wire/apphosted.py)
APP_MEDIA_UNREACHABLE = ResultInfo(
    410, 9140, "Media connectivity failure: the application's media endpoint could not be reached in time."
)
APP_MEDIA_LOST = ResultInfo(
    410, 9141, "Media connectivity failure: the connection to the application's media endpoint was lost."
)
