"""Stand-ins for what the project's machines lack: TensorRT, a CUDA GPU, Jetson telemetry sources."""
