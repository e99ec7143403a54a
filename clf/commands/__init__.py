"""Commands that span layers (`clf export` reads the registry, validation samples and the ONNX exporter): each a thin
function the command line's dispatch table (`clf.cli`) calls, so no lower layer holds a command."""
