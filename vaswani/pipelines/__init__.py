from .pipeline_vaswani import VaswaniQuestionAnsweringPipeline, VaswaniText2TextPipeline


__all__ = ["VaswaniQuestionAnsweringPipeline", "VaswaniText2TextPipeline"]
