"""A Python temporalio workflow that calls an hb activity by name: the cross-language caller of
hb-runtime/tests/temporal.rs.

    python caller.py --address 127.0.0.1:7233 --hb-queue hb-q --activity process_batch \
        --input '{"items": 10, "item_ms": 5}' [--heartbeat-timeout 2] [--start-to-close 60]
        [--max-attempts 3] [--cancel-after 1.5] [--workflow-id ID]

Runs a workflow worker of its own (on a queue of its own), executes one workflow that calls the
activity on the hb worker's queue, and prints one JSON line: {"ok": <result>} or
{"error": {"kind": ..., ...}} with what Python saw (the error class, a timeout's type, the
details decoded from JSON).
"""

import argparse
import asyncio
import json
import sys
import uuid
from datetime import timedelta

from temporalio import workflow
from temporalio.client import Client
from temporalio.common import RetryPolicy
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    CancelledError,
    TimeoutError,
)
from temporalio.worker import Worker


def describe(err):
    """What a test asserts about an activity's failure."""
    if isinstance(err, CancelledError):
        return {"kind": "CancelledError", "details": list(err.details)}
    if isinstance(err, TimeoutError):
        return {
            "kind": "TimeoutError",
            "timeout_type": err.type.name if err.type is not None else None,
            "details": list(err.last_heartbeat_details),
        }
    if isinstance(err, ApplicationError):
        return {
            "kind": "ApplicationError",
            "type": err.type,
            "non_retryable": err.non_retryable,
            "message": err.message,
            "details": list(err.details),
        }
    return {"kind": type(err).__name__, "message": str(err)}


@workflow.defn
class CallHbActivity:
    @workflow.run
    async def run(self, req: dict) -> dict:
        retry = RetryPolicy(
            initial_interval=timedelta(milliseconds=200),
            maximum_interval=timedelta(seconds=1),
            maximum_attempts=req["max_attempts"],
        )
        handle = workflow.start_activity(
            req["activity"],
            req["input"],
            task_queue=req["hb_queue"],
            start_to_close_timeout=timedelta(seconds=req["start_to_close"]),
            heartbeat_timeout=(
                timedelta(seconds=req["heartbeat_timeout"])
                if req["heartbeat_timeout"]
                else None
            ),
            retry_policy=retry,
            cancellation_type=workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
        )
        cancelled_at = None
        if req["cancel_after"]:
            await asyncio.sleep(req["cancel_after"])
            # The start of this workflow task: the cancel is sent when it completes.
            cancelled_at = workflow.now().timestamp()
            handle.cancel()
        try:
            return {"ok": await handle}
        except ActivityError as e:
            return {"error": describe(e.cause), "cancel_requested_at": cancelled_at}


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--address", required=True)
    p.add_argument("--namespace", default="default")
    p.add_argument("--hb-queue", required=True)
    p.add_argument("--activity", required=True)
    p.add_argument("--input", default="null")
    p.add_argument("--heartbeat-timeout", type=float, default=0)
    p.add_argument("--start-to-close", type=float, default=120)
    p.add_argument("--max-attempts", type=int, default=1)
    p.add_argument("--cancel-after", type=float, default=0)
    p.add_argument("--workflow-id", default=None)
    a = p.parse_args()

    client = await Client.connect(a.address, namespace=a.namespace)
    queue = f"py-workflows-{uuid.uuid4()}"
    req = {
        "activity": a.activity,
        "input": json.loads(a.input),
        "hb_queue": a.hb_queue,
        "heartbeat_timeout": a.heartbeat_timeout,
        "start_to_close": a.start_to_close,
        "max_attempts": a.max_attempts,
        "cancel_after": a.cancel_after,
    }
    async with Worker(client, task_queue=queue, workflows=[CallHbActivity]):
        out = await client.execute_workflow(
            CallHbActivity.run,
            req,
            id=a.workflow_id or f"call-{a.activity}-{uuid.uuid4()}",
            task_queue=queue,
        )
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except Exception as e:  # a failure of the script itself, not of the activity
        print(json.dumps({"script_error": repr(e)}), flush=True)
        sys.exit(1)
