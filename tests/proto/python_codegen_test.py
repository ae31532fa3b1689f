"""The wire API stays usable from Python: grpc_tools.protoc generates modules that import and work.

Usage: python_codegen_test.py PROTO_DIR. To add a check: extend main() below.
"""
import pathlib
import subprocess
import sys
import tempfile


def main(proto_dir: str) -> int:
    protos = sorted(str(p.relative_to(proto_dir))
                    for p in pathlib.Path(proto_dir).glob("lemo/v1/*.proto"))
    assert protos, f"no .proto files under {proto_dir}/lemo/v1"
    with tempfile.TemporaryDirectory() as out:
        subprocess.run([sys.executable, "-m", "grpc_tools.protoc", "-I", proto_dir,
                        f"--python_out={out}", f"--grpc_python_out={out}", *protos],
                       check=True)
        sys.path.insert(0, out)
        from google.protobuf import json_format
        from lemo.v1 import job_pb2, job_service_pb2, job_service_pb2_grpc  # noqa: F401
        from lemo.v1 import job_spec_pb2, worker_service_pb2, worker_service_pb2_grpc

        spec = json_format.Parse(
            '{"model": {"path": "/m"}, "data": {"path": "/d.u16", "format": "U16"},'
            ' "seqLen": 128, "steps": 3, "resources": {"deviceKind": "CPU"}}',
            job_spec_pb2.JobSpec())
        assert spec.data.format == job_spec_pb2.U16
        request = job_service_pb2.SubmitJobRequest(spec=spec)
        back = job_service_pb2.SubmitJobRequest.FromString(request.SerializeToString())
        assert back.spec.seq_len == 128
        for stub, methods in [
            (job_service_pb2_grpc.JobServiceStub,
             ["SubmitJob", "GetJob", "ListJobs", "CancelJob", "WatchJob",
              "ListCheckpoints", "DownloadCheckpoint", "ListWorkers"]),
            (worker_service_pb2_grpc.WorkerServiceStub,
             ["Connect", "UploadCheckpoint", "DownloadCheckpoint"]),
        ]:
            import grpc
            channel = grpc.insecure_channel("localhost:1")
            instance = stub(channel)
            for m in methods:
                assert hasattr(instance, m), f"{stub.__name__} lacks {m}"
            channel.close()
        event = job_pb2.JobEvent(sequence=1, metric=job_pb2.MetricSample(step=1, loss=2.5))
        assert event.WhichOneof("kind") == "metric"
        msg = worker_service_pb2.WorkerMessage(
            register=worker_service_pb2.Register(worker_id="w", devices=[
                job_pb2.Device(kind=job_spec_pb2.CUDA, index=0, total_memory_bytes=1 << 30)]))
        assert msg.WhichOneof("kind") == "register"
    print(f"generated and imported {len(protos)} files")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
