"""The client stage, which `python -m convert.verify` drives, under the scheme convert was
imported by: a top-level folder in a checkout, `triton_encoders.client` once installed."""
if __package__.count("."):
    from ..client import ClientError, EncoderClient
    from ..client.model_info import ModelInfo
else:
    from client import ClientError, EncoderClient
    from client.model_info import ModelInfo

__all__ = ["ClientError", "EncoderClient", "ModelInfo"]
