#!/bin/sh
# Regenerate the Python modules of the chip protocol (committed under src/chiploop/remote/).
set -e
cd "$(dirname "$0")/.."
python -m grpc_tools.protoc -Iproto --python_out=src/chiploop/remote --grpc_python_out=src/chiploop/remote \
    proto/chiploop_chip.proto
# grpc_tools writes a top-level import; the modules live in a package
sed -i 's/^import chiploop_chip_pb2 as/from chiploop.remote import chiploop_chip_pb2 as/' \
    src/chiploop/remote/chiploop_chip_pb2_grpc.py
