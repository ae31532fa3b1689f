#!/usr/bin/env python3
"""A JobService client in Python, generated from the .proto files at run time (interop check).

It submits a job spec (or takes an existing job), watches it to a terminal state, and reports
the outcome. The e2e tests run it against a live coordinator; it also shows how any grpcio
user talks to the service.

Usage:
  python_client.py --server HOST:PORT --spec FILE.yaml|json [--token-file F] [--timeout S]
  python_client.py --server HOST:PORT --job JOB_ID        # watch a job already submitted

Output: one line per state change, checkpoint and log line on stdout, then a last line
  RESULT {"jobId": ..., "state": "SUCCEEDED", "steps": [1, 2, ...], "checkpoints": [...],
          "failure": {...}}
with the rank-0 metric steps seen, in order (so a test can check one sample per step).

The bearer token comes from --token-file, $LEMO_TOKEN_FILE or $LEMO_TOKEN, never from argv
(where every user of the machine could read it); --token is refused.

Exit codes (as lemoctl's): 0 SUCCEEDED, 1 FAILED or CANCELLED, 2 usage or invalid spec,
3 coordinator unreachable or --timeout passed, 4 job not found, 5 auth failure, 6 other.
Needs grpcio and grpcio-tools (and PyYAML for .yaml specs).
"""
import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile

EXIT_OK, EXIT_JOB_FAILED, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3
EXIT_NOT_FOUND, EXIT_AUTH, EXIT_OTHER = 4, 5, 6
DEFAULT_PROTO_DIR = pathlib.Path(__file__).resolve().parents[2] / "proto"


def generate(proto_dir, out_dir):
    """Generates lemo.v1 Python modules into out_dir and makes them importable."""
    protos = sorted(str(p.relative_to(proto_dir))
                    for p in pathlib.Path(proto_dir).glob("lemo/v1/*.proto"))
    if not protos:
        raise SystemExit(f"no .proto files under {proto_dir}/lemo/v1")
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", "-I", str(proto_dir),
                    f"--python_out={out_dir}", f"--grpc_python_out={out_dir}", *protos],
                   check=True)
    sys.path.insert(0, out_dir)


def load_spec(path, job_spec_pb2):
    """A JobSpec from YAML or JSON through protobuf's JSON mapping, as lemoctl reads it."""
    from google.protobuf import json_format
    text = pathlib.Path(path).read_text()
    if path.endswith(".json"):
        tree = json.loads(text)
    else:
        import yaml  # PyYAML
        tree = yaml.safe_load(text)
    return json_format.ParseDict(tree, job_spec_pb2.JobSpec())


def exit_code_for(code, grpc):
    return {
        grpc.StatusCode.INVALID_ARGUMENT: EXIT_USAGE,
        grpc.StatusCode.UNAVAILABLE: EXIT_UNREACHABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED: EXIT_UNREACHABLE,
        grpc.StatusCode.NOT_FOUND: EXIT_NOT_FOUND,
        grpc.StatusCode.UNAUTHENTICATED: EXIT_AUTH,
        grpc.StatusCode.PERMISSION_DENIED: EXIT_AUTH,
    }.get(code, EXIT_OTHER)


def run(args):
    import grpc
    from lemo.v1 import job_pb2, job_service_pb2, job_service_pb2_grpc, job_spec_pb2

    if args.ca_file:
        creds = grpc.ssl_channel_credentials(pathlib.Path(args.ca_file).read_bytes())
        channel = grpc.secure_channel(args.server, creds)
    else:
        channel = grpc.insecure_channel(args.server)
    stub = job_service_pb2_grpc.JobServiceStub(channel)
    token = read_token(args)
    metadata = [("authorization", f"Bearer {token}")] if token else []

    if args.spec:
        try:
            spec = load_spec(args.spec, job_spec_pb2)
        except Exception as e:  # noqa: BLE001 - any parse error is the user's spec
            print(f"python_client: {args.spec}: {e}", file=sys.stderr)
            return EXIT_USAGE
        job = stub.SubmitJob(job_service_pb2.SubmitJobRequest(spec=spec),
                             metadata=metadata, timeout=30)
        job_id = job.id
        print(f"submitted {job_id}", flush=True)
    else:
        job_id = args.job

    terminal = {job_pb2.SUCCEEDED, job_pb2.FAILED, job_pb2.CANCELLED}
    state, steps, checkpoints, failure = job_pb2.JOB_STATE_UNSPECIFIED, [], [], None
    request = job_service_pb2.WatchJobRequest(job_id=job_id)
    for event in stub.WatchJob(request, metadata=metadata, timeout=args.timeout):
        kind = event.WhichOneof("kind")
        if kind == "state_change":
            change = event.state_change
            state = change.to
            print(f"state {job_pb2.JobState.Name(change.to)} {change.message}".rstrip(), flush=True)
            if change.HasField("failure") and change.failure.reason:
                failure = {"reason": job_pb2.FailureReason.Name(change.failure.reason),
                           "message": change.failure.message}
        elif kind == "metric" and event.metric.rank == 0:
            steps.append(event.metric.step)
        elif kind == "checkpoint":
            checkpoints.append(event.checkpoint.checkpoint_id)
            print(f"checkpoint {event.checkpoint.checkpoint_id} step {event.checkpoint.step}",
                  flush=True)
        elif kind == "log":
            print(f"log [rank {event.log.rank}] {event.log.text}", flush=True)
        if state in terminal:
            break
    if state not in terminal:  # The stream ended early: ask for the state.
        state = stub.GetJob(job_service_pb2.GetJobRequest(job_id=job_id),
                            metadata=metadata, timeout=30).state
    result = {"jobId": job_id, "state": job_pb2.JobState.Name(state), "steps": steps,
              "checkpoints": checkpoints, "failure": failure}
    print("RESULT " + json.dumps(result), flush=True)
    channel.close()
    return EXIT_OK if state == job_pb2.SUCCEEDED else EXIT_JOB_FAILED


def read_token(args):
    path = args.token_file or os.environ.get("LEMO_TOKEN_FILE", "")
    if path:
        return pathlib.Path(path).read_text().strip()
    return os.environ.get("LEMO_TOKEN", "")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", default=os.environ.get("LEMO_SERVER", "localhost:50051"),
                        help="coordinator host:port (default $LEMO_SERVER or localhost:50051)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--spec", help="job spec to submit (.yaml, .yml or .json)")
    source.add_argument("--job", help="watch this job instead of submitting one")
    parser.add_argument("--token-file", default="",
                        help="file holding the client's bearer token "
                             "(default $LEMO_TOKEN_FILE, else $LEMO_TOKEN)")
    parser.add_argument("--token", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--ca-file", default="", help="PEM CA of the coordinator's TLS")
    parser.add_argument("--timeout", type=float, default=600,
                        help="seconds to wait for the job to finish (default 600)")
    parser.add_argument("--proto-dir", default=str(DEFAULT_PROTO_DIR),
                        help="directory holding lemo/v1/*.proto (default: this repo's)")
    try:
        args = parser.parse_args()
    except SystemExit as e:
        return EXIT_OK if e.code == 0 else EXIT_USAGE
    if args.token is not None:
        print("python_client: --token: a token on the command line is visible to every user "
              "(ps, /proc); use --token-file, $LEMO_TOKEN_FILE or $LEMO_TOKEN", file=sys.stderr)
        return EXIT_USAGE

    import grpc
    with tempfile.TemporaryDirectory() as out:
        generate(args.proto_dir, out)
        try:
            return run(args)
        except grpc.RpcError as e:
            print(f"python_client: {e.code().name}: {e.details()}", file=sys.stderr)
            return exit_code_for(e.code(), grpc)


if __name__ == "__main__":
    sys.exit(main())
