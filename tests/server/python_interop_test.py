"""Interop: a Python grpcio client generated from the .proto files drives a real lemo-coordinator.

It submits and watches a job while a Python fake worker runs it over a real Connect stream,
checks error codes, server reflection and /metrics, then restarts the coordinator on the same
data dir and finds the job and its events intact.
Usage: python_interop_test.py PROTO_DIR COORDINATOR_BINARY. To add a check: extend main().
"""
import os
import queue
import re
import signal
import subprocess
import sys
import tempfile
import threading
import urllib.request

CLIENT_TOKEN = "interop-client"
WORKER_TOKEN = "interop-worker"


def generate(proto_dir, out):
    protos = [f"lemo/v1/{n}" for n in sorted(os.listdir(os.path.join(proto_dir, "lemo/v1")))
              if n.endswith(".proto")]
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", "-I", proto_dir,
                    f"--python_out={out}", f"--grpc_python_out={out}", *protos], check=True)
    sys.path.insert(0, out)


def start(binary, data_dir, token_file=None):
    # token_file: the principals ("<token> <name> <role>" lines); None = no authentication
    # (allowed on loopback).
    auth = ["--token-file", token_file] if token_file else []
    proc = subprocess.Popen(
        [binary, "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0",
         "--data-dir", data_dir, "--worker-timeout", "5s", *auth],
        stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    m = re.search(r"listening on port (\d+), metrics port (\d+)", line)
    assert m, f"unexpected first line: {line!r}"
    return proc, int(m.group(1)), int(m.group(2))


def stop(proc):
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0, "coordinator did not exit cleanly"


def run_job(grpc, pb, port):
    job_pb2, job_service_pb2, job_service_pb2_grpc, job_spec_pb2, ws_pb2, ws_pb2_grpc = pb
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    jobs = job_service_pb2_grpc.JobServiceStub(channel)
    workers = ws_pb2_grpc.WorkerServiceStub(channel)
    client_md = [("authorization", f"Bearer {CLIENT_TOKEN}")]
    worker_md = [("authorization", f"Bearer {WORKER_TOKEN}")]

    from google.protobuf import json_format
    spec = json_format.Parse(
        '{"displayName": "interop", "model": {"path": "/m"},'
        ' "data": {"path": "/d.jsonl", "format": "JSONL"}, "seqLen": 64, "steps": 3,'
        ' "resources": {"deviceKind": "CPU"}}', job_spec_pb2.JobSpec())
    job = jobs.SubmitJob(job_service_pb2.SubmitJobRequest(spec=spec), metadata=client_md)
    assert job.state == job_pb2.QUEUED, job

    for call, code in [
        (lambda: jobs.GetJob(job_service_pb2.GetJobRequest(job_id="job-none"),
                             metadata=client_md), grpc.StatusCode.NOT_FOUND),
        (lambda: jobs.GetJob(job_service_pb2.GetJobRequest(job_id=job.id)),
         grpc.StatusCode.UNAUTHENTICATED),
        (lambda: jobs.GetJob(job_service_pb2.GetJobRequest(job_id=job.id), metadata=worker_md),
         grpc.StatusCode.PERMISSION_DENIED),
    ]:
        try:
            call()
            raise AssertionError(f"expected {code}")
        except grpc.RpcError as e:
            assert e.code() == code, (e.code(), e.details())

    events = []
    watcher = threading.Thread(target=lambda: events.extend(
        jobs.WatchJob(job_service_pb2.WatchJobRequest(job_id=job.id), metadata=client_md,
                      timeout=30)))
    watcher.start()

    outgoing = queue.Queue()
    outgoing.put(ws_pb2.WorkerMessage(register=ws_pb2.Register(
        worker_id="py-worker", host="localhost", rendezvous_address="127.0.0.1:29500",
        devices=[job_pb2.Device(kind=job_spec_pb2.CPU, name="cpu", total_memory_bytes=1 << 30)])))

    def requests():
        while True:
            m = outgoing.get()
            if m is None:
                return
            yield m

    replies = workers.Connect(requests(), metadata=worker_md, timeout=30)
    assert next(replies).HasField("welcome")
    assign = next(replies).assign
    assert assign.job_id == job.id and assign.spec.steps == 3, assign

    def status(state, step):
        outgoing.put(ws_pb2.WorkerMessage(task_status=ws_pb2.TaskStatus(
            job_id=assign.job_id, epoch=assign.epoch, state=state, step=step)))

    status(job_pb2.RUNNING, 0)
    for step in (1, 2, 3):
        outgoing.put(ws_pb2.WorkerMessage(metrics=ws_pb2.MetricReport(
            job_id=assign.job_id, epoch=assign.epoch,
            sample=job_pb2.MetricSample(step=step, loss=3.0 / step, total_steps=3))))
    status(job_pb2.SUCCEEDED, 3)
    watcher.join(timeout=30)
    outgoing.put(None)
    for _ in replies:
        pass

    kinds = [e.WhichOneof("kind") for e in events]
    assert [e.sequence for e in events] == list(range(1, len(events) + 1)), events
    assert kinds.count("metric") == 3, kinds
    states = [e.state_change.to for e in events if e.HasField("state_change")]
    assert states == [job_pb2.QUEUED, job_pb2.SCHEDULED, job_pb2.RUNNING, job_pb2.SUCCEEDED], states
    channel.close()
    return job.id, len(events)


def check_reflection(grpc, port, served):
    # ServerReflectionRequest{list_services: ""} is field 7 with an empty string. Reflection is
    # served only without authentication (docs/security.md).
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    call = channel.stream_stream("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
                                 request_serializer=lambda b: b,
                                 response_deserializer=lambda b: b)
    md = [("authorization", f"Bearer {CLIENT_TOKEN}")]
    try:
        reply = next(call(iter([b"\x3a\x00"]), metadata=md, timeout=10))
    except grpc.RpcError as e:
        assert not served and e.code() == grpc.StatusCode.UNIMPLEMENTED, (e.code(), e.details())
        channel.close()
        return
    assert served, "reflection answered on a coordinator with tokens"
    for name in (b"lemo.v1.JobService", b"lemo.v1.WorkerService", b"grpc.health.v1.Health"):
        assert name in reply, reply
    channel.close()


def main(proto_dir, binary):
    import grpc
    with tempfile.TemporaryDirectory() as tmp:
        os.makedirs(os.path.join(tmp, "gen"))
        generate(proto_dir, os.path.join(tmp, "gen"))
        from lemo.v1 import job_pb2, job_service_pb2, job_service_pb2_grpc, job_spec_pb2
        from lemo.v1 import worker_service_pb2, worker_service_pb2_grpc
        pb = (job_pb2, job_service_pb2, job_service_pb2_grpc, job_spec_pb2,
              worker_service_pb2, worker_service_pb2_grpc)
        token_file = os.path.join(tmp, "principals")
        with open(token_file, "w") as f:
            f.write(f"{CLIENT_TOKEN} interop client\n{WORKER_TOKEN} py-worker worker\n")
        data_dir = os.path.join(tmp, "data")

        proc, port, metrics_port = start(binary, data_dir, token_file)
        try:
            job_id, n_events = run_job(grpc, pb, port)
            check_reflection(grpc, port, served=False)
            text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics").read().decode()
            for needle in ('lemo_jobs{state="succeeded"} 1', "lemo_workers_connected",
                           'lemo_rpc_requests_total{code="OK",method="SubmitJob"} 1',
                           "lemo_job_queue_wait_seconds_bucket"):
                assert needle in text, needle
        finally:
            stop(proc)

        # A restarted coordinator has the job and every event.
        proc, port, _ = start(binary, data_dir, token_file)
        try:
            channel = grpc.insecure_channel(f"127.0.0.1:{port}")
            jobs = job_service_pb2_grpc.JobServiceStub(channel)
            md = [("authorization", f"Bearer {CLIENT_TOKEN}")]
            job = jobs.GetJob(job_service_pb2.GetJobRequest(job_id=job_id), metadata=md)
            assert job.state == job_pb2.SUCCEEDED and job.current_step == 3, job
            replay = list(jobs.WatchJob(job_service_pb2.WatchJobRequest(job_id=job_id),
                                        metadata=md, timeout=10))
            assert len(replay) == n_events, (len(replay), n_events)
            assert job.owner == "interop", job.owner
            channel.close()
        finally:
            stop(proc)

        # Without tokens (loopback only) reflection describes the API.
        proc, port, _ = start(binary, data_dir)
        try:
            check_reflection(grpc, port, served=True)
        finally:
            stop(proc)
    print("python interop ok")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
