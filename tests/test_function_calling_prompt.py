"""The function-calling system prompt, verbatim as NousResearch's evaluator (interstellarninja/function-calling-eval,
2024-01-31 to 2024-06-24) builds it from a sample's tools."""

import json

from pydantic.v1 import BaseModel

from onmerge.lm_tasks import utils

TOOLS = json.dumps([{"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}}])

# The evaluator's prompt for TOOLS, in the form its logs (tool_eval/eval_logs, 2024-02-02) show for each sample.
EXPECTED = (
    "You are a function calling AI model. You are provided with function signatures within <tools></tools> XML tags. "
    "You may call one or more functions to assist with the user query. Don't make assumptions about what values to "
    'plug into functions. Here are the available tools: <tools> [{"type": "function", "function": {"name": '
    '"get_time", "parameters": {"type": "object"}}}] </tools> Use the following pydantic model json schema for each '
    "tool call you will make: {'title': 'FunctionCall', 'type': 'object', 'properties': {'arguments': {'title': "
    "'Arguments', 'type': 'object'}, 'name': {'title': 'Name', 'type': 'string'}}, 'required': ['arguments', 'name']} "
    "For each function call return a json object with function name and arguments within <tool_call></tool_call> XML "
    "tags as follows:\n<tool_call>\n{'arguments': <args-dict>, 'name': <function-name>}\n</tool_call>"
)


# The evaluator's tool_eval/schema.py model, under pydantic 1 (the key order its logs show). No docstring: pydantic
# would print it into the schema as a description, and the evaluator's model has none.
class FunctionCall(BaseModel):
    arguments: dict
    name: str


def system_prompt(tools: str) -> str:
    """The system text function_call_docs gives a one-turn sample with these tools."""
    row = {"prompt": [{"role": "user", "content": "What time is it?"}], "completion": "[]", "tools": tools}
    return utils.function_call_docs([row])[0]["system"]


def test_the_prompt_is_the_evaluators_verbatim():
    assert system_prompt(TOOLS) == EXPECTED


def test_the_schema_is_the_evaluators_pydantic_model_printed_as_a_dict():
    schema = str(json.loads(FunctionCall.schema_json()))
    assert f"tool call you will make: {schema} For each function call" in EXPECTED


def test_newlines_in_the_tools_become_spaces_as_in_the_evaluators_tools_field():
    indented = json.dumps(json.loads(TOOLS), indent=1)
    assert "\n" in indented
    assert system_prompt(indented) == EXPECTED.replace(TOOLS, indented.replace("\n", " "))
