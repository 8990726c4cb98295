from .pipeline_vaswani import VaswaniImageToTextPipeline, VaswaniQuestionAnsweringPipeline, VaswaniText2TextPipeline


__all__ = ["VaswaniImageToTextPipeline", "VaswaniQuestionAnsweringPipeline", "VaswaniText2TextPipeline"]
