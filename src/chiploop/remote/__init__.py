"""A chip served over gRPC behind the crossbar verbs (``proto/chiploop_chip.proto``): ``wire``,
``server`` (``chiploop serve``), ``client`` (``RemoteCrossbar``), ``spec`` (``chip: {remote, token_file}``)."""
