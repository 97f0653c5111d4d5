"""The names the protocol spells on the wire: its ops and its error codes, each written once here.
docs/protocol.md lists them with what they mean."""

from __future__ import annotations

from typing import Final, Tuple


class Op:
    """A request's ``"op"``."""

    PING: Final = "ping"
    SNAPSHOT: Final = "snapshot"
    JOB: Final = "job"
    PUSH: Final = "push"
    PUSH_MANY: Final = "push_many"
    REMOVE: Final = "remove"
    KILL: Final = "kill"
    MOVE: Final = "move"
    SHIFT: Final = "shift"
    REQUEUE: Final = "requeue"
    PAUSE: Final = "pause"
    RESUME: Final = "resume"
    PARALLEL: Final = "parallel"
    TAIL: Final = "tail"
    LOG: Final = "log"
    LOG_END: Final = "log_end"
    WAIT: Final = "wait"
    SUBSCRIBE: Final = "subscribe"
    FORGET: Final = "forget"
    CLEAN: Final = "clean"
    SHUTDOWN: Final = "shutdown"
    SEND: Final = "send"
    RESIZE: Final = "resize"
    GREP: Final = "grep"
    GREP_STOP: Final = "grep_stop"


# The ops a server accepts whatever protocol the client's hello says (docs/protocol.md: frozen),
# so that any pq-tui can stop any other's server.
CONTROL_OPS: Tuple[str, ...] = (Op.PING, Op.SHUTDOWN)


class ErrorCode:
    """An error reply's (or error message's) ``"code"``: what a client tells errors apart by."""

    BAD_MESSAGE: Final = "bad_message"  # a line that is not a message, or not the one expected
    BAD_REQUEST: Final = "bad_request"  # a request that cannot be carried out as written
    PROTOCOL_MISMATCH: Final = "protocol_mismatch"  # an op a control connection may not send
    TOO_LARGE: Final = "too_large"  # more than one message holds
    UNKNOWN_JOB: Final = "unknown_job"
    UNKNOWN_LANE: Final = "unknown_lane"
    BAD_LANE_NAME: Final = "bad_lane_name"  # a new lane's name is refused
    CONFLICT: Final = "conflict"  # not possible in the present state of the job or the server
    STOPPING: Final = "stopping"  # the server is shutting down
    STORE_ERROR: Final = "store_error"  # the state file cannot be written
    LOG_UNREADABLE: Final = "log_unreadable"
    INTERNAL: Final = "internal"  # a bug of the server's (it logs the traceback)
    NO_SERVER: Final = "no_server"  # a bridge could not reach its server, nor start one
    INCOMPLETE: Final = "incomplete"  # a push_many's last batch, earlier ones lost with a link
