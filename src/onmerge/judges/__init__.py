"""The paper presets' judged reward benchmarks: MT-Bench and AlpacaEval 2.0 (length-controlled), judged by a model
behind an OpenAI-compatible chat-completions endpoint.

Answers are generated here with transformers (`answers`), judged through `endpoint` (cached, retried), and scored
as FastChat's `llm_judge` (`mt_bench`) and AlpacaEval 2.0 (`alpacaeval`) score them.
"""
