"""Generated gRPC code for serving/proto/recdrill.proto (package recdrill.v1).

Regenerate from the repository root with::

    python -m grpc_tools.protoc -I. --python_out=. --grpc_python_out=. serving/proto/recdrill.proto
"""
