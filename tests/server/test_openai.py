"""The OpenAI-compatible HTTP routes, driven by the official ``openai`` client and by plain HTTP."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import openai
import pytest

from multistream.server import ServerLimits


def client(server, key: str = "none") -> openai.OpenAI:
    return openai.OpenAI(base_url=server.http + "/v1", api_key=key, max_retries=0, timeout=30)


def post(server, path: str, body, headers: dict | None = None) -> tuple[int, dict]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(server.http + path, data=data, headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_models_and_a_plain_completion(live):
    server = live(think=True)
    c = client(server)
    models = c.models.list()
    assert [m.id for m in models.data] == ["echo"]
    r = c.chat.completions.create(
        model="echo",
        messages=[
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "What is the capital of France?"},
        ],
    )
    choice = r.choices[0]
    assert choice.message.role == "assistant" and choice.message.content == "What is the capital of France?"
    assert choice.finish_reason == "stop"
    n_question = len(server.app.state.hub.tok.encode_text("What is the capital of France?"))
    assert choice.message.reasoning_content == f"len={n_question}"  # the think stream
    assert r.usage.completion_tokens > n_question and r.usage.prompt_tokens > n_question
    assert r.id.startswith("chatcmpl-") and r.model == "echo"


def test_streamed_completion_and_earlier_turns(live):
    server = live()
    c = client(server)
    stream = c.chat.completions.create(
        model="echo",
        stream=True,
        stream_options={"include_usage": True},
        messages=[
            {"role": "user", "content": "first turn"},
            {"role": "assistant", "content": "first reply"},
            {"role": "user", "content": "Where is the meeting?"},
        ],
    )
    chunks = list(stream)
    content = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert content == "Where is the meeting?"
    assert len([ch for ch in chunks if ch.choices and ch.choices[0].delta.content]) > 2  # token by token
    finishes = [ch.choices[0].finish_reason for ch in chunks if ch.choices and ch.choices[0].finish_reason]
    assert finishes == ["stop"]
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens >= 3


CALCULATOR = {"type": "function", "function": {"name": "calculator", "parameters": {"type": "object"}}}


def test_max_tokens_gives_length_and_a_sum_gives_tool_calls(live):
    server = live()
    c = client(server)
    r = c.chat.completions.create(
        model="echo", max_tokens=3, messages=[{"role": "user", "content": "hello world, user tool think"}]
    )
    assert r.choices[0].finish_reason == "length"
    assert "hello world, user tool think".startswith(r.choices[0].message.content) and r.usage.completion_tokens == 3
    r = c.chat.completions.create(model="echo", messages=[{"role": "user", "content": "2+3"}], tools=[CALCULATOR])
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content == ""
    call = choice.message.tool_calls[0]
    assert call.function.name == "calculator" and json.loads(call.function.arguments) == {"expression": "2+3"}


def test_an_acknowledgement_before_the_call_does_not_end_the_completion(live):
    """The shipped model says "one moment" on the answer stream, ends that message, then writes the call: the
    completion waits for the call (finish ``tool_calls``, content and call together)."""
    server = live(ack=True)
    c = client(server)
    messages = [{"role": "user", "content": "2+3"}]
    r = c.chat.completions.create(model="echo", messages=messages, tools=[CALCULATOR])
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content == "One moment."
    call = choice.message.tool_calls[0]
    assert call.function.name == "calculator" and json.loads(call.function.arguments) == {"expression": "2+3"}
    chunks = list(c.chat.completions.create(model="echo", messages=messages, stream=True, tools=[CALCULATOR]))
    assert [ch.choices[0].finish_reason for ch in chunks if ch.choices[0].finish_reason] == ["tool_calls"]
    assert "".join(ch.choices[0].delta.content or "" for ch in chunks) == "One moment."
    # a plain answer ends with stop a few quiet rows after its message
    r = c.chat.completions.create(model="echo", messages=[{"role": "user", "content": "hello"}])
    assert r.choices[0].finish_reason == "stop" and r.choices[0].message.content == "hello"


def test_a_stop_string_ends_the_completion_and_is_never_sent(live):
    server = live(repeats=0)  # says the question back forever
    c = client(server)
    messages = [{"role": "user", "content": "hello world, again"}]
    r = c.chat.completions.create(model="echo", messages=messages, stop=["world"])
    assert r.choices[0].finish_reason == "stop" and r.choices[0].message.content == "hello "
    chunks = list(c.chat.completions.create(model="echo", messages=messages, stop=["xyz", "d, a"], stream=True))
    assert "".join(ch.choices[0].delta.content or "" for ch in chunks) == "hello worl"  # nothing of the stop string
    assert [ch.choices[0].finish_reason for ch in chunks if ch.choices[0].finish_reason] == ["stop"]


def test_a_client_s_tool_result_is_answered_by_replaying_the_exchange(live):
    """The model was trained on a result that follows its own call: the server replays the exchange (the question
    again), and when the model writes the same call, the client's result goes in; the "one moment" said again is not
    sent twice."""
    server = live(ack=True, results=True)
    c = client(server)
    messages = [{"role": "user", "content": "2+3"}]
    first = c.chat.completions.create(model="echo", messages=messages, tools=[CALCULATOR]).choices[0]
    assert first.finish_reason == "tool_calls" and first.message.content == "One moment."
    messages += [{"role": "assistant", "content": first.message.content,
                  "tool_calls": [first.message.tool_calls[0].model_dump()]},
                 {"role": "tool", "tool_call_id": first.message.tool_calls[0].id, "content": "5"}]
    r = c.chat.completions.create(model="echo", messages=messages, tools=[CALCULATOR])
    assert r.choices[0].finish_reason == "stop" and r.choices[0].message.content == "5"
    chunks = list(c.chat.completions.create(model="echo", messages=messages, tools=[CALCULATOR], stream=True))
    assert "".join(ch.choices[0].delta.content or "" for ch in chunks) == "5"
    # a result for some other call than the one the model writes: that call goes back to the client
    other = messages[:1] + [{**messages[1], "tool_calls": [{"id": "x", "type": "function", "function": {
        "name": "calculator", "arguments": '{"expression": "7+7"}'}}]}, {**messages[2], "tool_call_id": "x"}]
    r = c.chat.completions.create(model="echo", messages=other, tools=[CALCULATOR])
    assert r.choices[0].finish_reason == "tool_calls" and r.choices[0].message.content == ""


def test_a_call_of_a_tool_the_request_does_not_declare_runs_on_the_server(live):
    """The model calls its calculator unasked: with no ``tools`` in the request the server runs it, the model reads
    the result, and the client gets the answer, not a call of a function it never declared."""
    server = live(ack=True, results=True)
    c = client(server)
    r = c.chat.completions.create(model="echo", messages=[{"role": "user", "content": "2+3"}])
    choice = r.choices[0]
    assert choice.finish_reason == "stop" and not choice.message.tool_calls
    assert choice.message.content == "One moment.\n5"  # two answer messages, one line each
    other = {"type": "function", "function": {"name": "lookup"}}  # declaring another tool changes nothing
    r = c.chat.completions.create(model="echo", messages=[{"role": "user", "content": "2+3"}], tools=[other], stream=True)
    chunks = list(r)
    assert "".join(ch.choices[0].delta.content or "" for ch in chunks) == "One moment.\n5"
    assert [ch.choices[0].finish_reason for ch in chunks if ch.choices[0].finish_reason] == ["stop"]


@pytest.mark.parametrize("idle_rows", [8, None])
def test_the_answer_after_a_server_tool_comes_whether_or_not_the_engine_pauses(live, idle_rows):
    server = live(ack=True, results=True, idle_rows=idle_rows)
    r = client(server).chat.completions.create(model="echo", messages=[{"role": "user", "content": "2+3"}])
    assert r.choices[0].finish_reason == "stop" and r.choices[0].message.content == "One moment.\n5"


def test_errors_in_openai_shape(live):
    server = live(limits=ServerLimits(max_input_chars=100, max_message_bytes=4000))
    c = client(server)
    with pytest.raises(openai.NotFoundError) as e:
        c.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert e.value.status_code == 404 and e.value.code == "model_not_found" and "echo" in e.value.message
    with pytest.raises(openai.BadRequestError) as e:
        c.chat.completions.create(model="echo", messages=[])
    assert e.value.param == "messages"
    with pytest.raises(openai.BadRequestError) as e:
        c.chat.completions.create(model="echo", temperature=7, messages=[{"role": "user", "content": "hi"}])
    assert e.value.param == "temperature"
    with pytest.raises(openai.BadRequestError) as e:
        c.chat.completions.create(model="echo", messages=[{"role": "user", "content": "x" * 101}])
    assert e.value.code == "input_too_long"
    with pytest.raises(openai.BadRequestError) as e:
        c.chat.completions.create(
            model="echo", messages=[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]
        )
    assert "end with a user or tool message" in e.value.message

    status, body = post(server, "/v1/chat/completions", b'{"model": "echo", "messages": [{"role": "user", "content": "a\\ud800"}]}')
    assert status == 400 and "lone surrogate" in body["error"]["message"]  # (it was a 500 from the tokenizer)
    status, body = post(server, "/v1/chat/completions", b"{broken")
    assert status == 400 and body["error"]["code"] == "invalid_json" and body["error"]["type"] == "invalid_request_error"
    status, body = post(server, "/v1/chat/completions", {"model": "echo", "messages": [{"role": "user", "content": "y" * 5000}]})
    assert status == 413 and body["error"]["code"] == "message_too_large"
    status, body = post(server, "/v1/nothing", {})
    assert status == 404 and set(body["error"]) == {"message", "type", "param", "code"}
    # the server still answers after all that
    assert (
        c.chat.completions.create(model="echo", messages=[{"role": "user", "content": "ok?"}]).choices[0].message.content == "ok?"
    )


def test_api_key_gives_401_without_it(live):
    server = live(api_key="sekret")
    with pytest.raises(openai.AuthenticationError) as e:
        client(server, "wrong").models.list()
    assert e.value.status_code == 401 and e.value.code == "invalid_api_key"
    status, body = post(server, "/v1/chat/completions", {"model": "echo", "messages": [{"role": "user", "content": "hi"}]})
    assert status == 401 and body["error"]["code"] == "invalid_api_key"
    r = client(server, "sekret").chat.completions.create(model="echo", messages=[{"role": "user", "content": "hi"}])
    assert r.choices[0].message.content == "hi"
    with urllib.request.urlopen(server.http + "/", timeout=10) as page:  # the page itself is public; it asks for the key
        assert page.status == 200 and b"multistream" in page.read()


def test_a_dropped_stream_frees_its_session_and_a_full_server_says_429(live):
    from .test_ws import wait_sessions

    server = live(repeats=0, delay=0.005, limits=ServerLimits(max_sessions=1))
    c = client(server)
    stream = c.chat.completions.create(model="echo", stream=True, messages=[{"role": "user", "content": "on and on"}])
    pieces = []
    for chunk in stream:
        pieces.append(chunk.choices[0].delta.content or "")
        if len("".join(pieces)) > 20:
            break
    with pytest.raises(openai.RateLimitError) as e:  # the endless answer holds the only place
        c.chat.completions.create(model="echo", messages=[{"role": "user", "content": "me too"}])
    assert e.value.status_code == 429 and e.value.code == "too_many_sessions"
    stream.close()  # the client goes away in the middle of the answer
    wait_sessions(server, 0)
    r = c.chat.completions.create(model="echo", max_tokens=4, messages=[{"role": "user", "content": "me too"}])
    assert r.choices[0].finish_reason == "length"
