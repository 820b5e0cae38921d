"""RPC dispatch per protocol.md §2, with fake clients."""
import gevent
import gevent.event
import pytest

from snorky_sync import RPCError, RPCService, Service, rpc_asynchronous, rpc_command
from support.fakes import FakeClient, rpc


class Calc(RPCService):
    def __init__(self, name="calc"):
        super().__init__(name)
        self.pending = []
        self.lock_held = None

    @rpc_command
    def add(self, req, a, b=0):
        return a + b

    @rpc_command
    def falsy(self, req, which):
        return {"zero": 0, "empty": "", "list": [], "false": False, "none": None}[which]

    @rpc_command
    def fail(self, req, text=None):
        if text is None:
            raise RPCError()
        raise RPCError(text)

    @rpc_command
    def crash(self, req):
        raise KeyError("secret detail")

    @rpc_command
    def not_json(self, req):
        return object()

    @rpc_command
    def create_thing(self, req, private_handle, some_value=None):
        return [private_handle, some_value]

    @rpc_command
    def camelCased(self, req, fooBar):
        return fooBar

    @rpc_command
    def notify_then_reply(self, req):
        self.send_message_to(req.client, {"type": "note"})
        return "done"

    @rpc_command
    def locked(self, req):
        self.lock_held = self.lock._is_owned()
        return None

    @rpc_command(lock=False)
    def unlocked(self, req):
        self.lock_held = self.lock._is_owned()

    @rpc_asynchronous
    def later(self, req, value):
        self.pending.append(req)
        gevent.spawn(req.reply, value)

    @rpc_asynchronous
    def later_error(self, req):
        gevent.spawn(req.error, "Nope")

    @rpc_asynchronous
    def spawned(self, req, how):
        def work():
            if how == "rpc_error":
                raise RPCError("Bad how")
            if how == "crash":
                return 1 / 0
            if how == "not_json":
                return object()
            if how == "answers_itself":
                req.reply("mine")
                return "ignored"
            return how * 2
        req.spawn(work)

    @rpc_command
    def kwargs(self, req, **rest):
        return sorted(rest)

    def plain_method(self, req):
        return "never callable"


@pytest.fixture
def calc():
    return Calc()


@pytest.fixture
def client():
    return FakeClient()


def answers(client):
    return client.pop_messages()


def test_response_echoes_call_id_of_any_json_type(calc, client):
    for call_id in (7, 0, "abc", {"x": [1]}, 1.5, False):
        assert rpc(calc, client, "add", {"a": 1, "b": 2}, call_id) == {
            "type": "response", "callId": call_id, "data": 3}


def test_response_without_call_id_has_no_call_id_key(calc, client):
    for msg in ({"command": "add", "params": {"a": 1}},
                {"command": "add", "params": {"a": 1}, "callId": None}):
        calc.process_message_from(client, msg)
        assert answers(client) == [{"type": "response", "data": 1}]


def test_error_has_call_id_null_without_call_id(calc, client):
    calc.process_message_from(client, {"command": "nope", "params": {}})
    assert answers(client) == [{"type": "error", "callId": None, "message": "Unknown command"}]


@pytest.mark.parametrize("command", ["nope", 5, None, ["add"], {"a": 1}, "plain_method",
                                     "plainMethod", "__init__", "process_message_from"])
def test_unknown_command(calc, client, command):
    assert rpc(calc, client, command, {"a": 1}) == {
        "type": "error", "callId": 1, "message": "Unknown command"}


@pytest.mark.parametrize("params", [[], "x", None, 3, {}, {"b": 1}, {"a": 1, "c": 2},
                                    {"a": 1, "private_handle": 2}])
def test_invalid_params(calc, client, params):
    assert rpc(calc, client, "add", params) == {
        "type": "error", "callId": 1, "message": "Invalid params"}


def test_unknown_command_is_checked_before_params(calc, client):
    assert rpc(calc, client, "nope", "not an object")["message"] == "Unknown command"


def test_missing_command_or_params_sends_nothing(calc, client, caplog):
    for msg in ({"params": {}}, {"command": "add"}, "text", 3, None, [1]):
        calc.process_message_from(client, msg)
    assert client.frames == []
    assert "needs 'command' and 'params'" in caplog.text


def test_falsy_values_are_sent_as_they_are(calc, client):
    for which, value in (("zero", 0), ("empty", ""), ("list", []), ("false", False), ("none", None)):
        assert rpc(calc, client, "falsy", {"which": which})["data"] == value


def test_rpc_error_text_and_bare_rpc_error(calc, client):
    assert rpc(calc, client, "fail", {"text": "Not joined"})["message"] == "Not joined"
    assert rpc(calc, client, "fail", {})["message"] == "Exception"


def test_internal_error_hides_the_traceback(calc, client, caplog):
    answer = rpc(calc, client, "crash")
    assert answer == {"type": "error", "callId": 1, "message": "Internal error"}
    assert "secret detail" in caplog.text  # logged, not sent
    assert rpc(calc, client, "notJson")["message"] == "Internal error"


def test_snake_case_maps_to_camel_case_on_the_wire(calc, client):
    assert rpc(calc, client, "createThing", {"privateHandle": 3, "someValue": "v"})["data"] == [3, "v"]
    assert rpc(calc, client, "create_thing", {"privateHandle": 3})["message"] == "Unknown command"
    assert rpc(calc, client, "createThing", {"private_handle": 3})["message"] == "Invalid params"
    assert rpc(calc, client, "camelCased", {"fooBar": 1})["data"] == 1
    assert Calc.rpc_commands() == sorted([
        "add", "falsy", "fail", "crash", "notJson", "createThing", "camelCased",
        "notifyThenReply", "locked", "unlocked", "later", "laterError", "spawned", "kwargs"])


def test_var_keyword_commands_accept_any_params(calc, client):
    assert rpc(calc, client, "kwargs", {"z": 1, "a": 2})["data"] == ["a", "z"]


def test_notification_precedes_reply(calc, client):
    calc.process_message_from(client, {"command": "notifyThenReply", "params": {}, "callId": 4})
    assert answers(client) == [{"type": "note"}, {"type": "response", "callId": 4, "data": "done"}]


def test_commands_run_under_the_lock_unless_opted_out(calc, client):
    rpc(calc, client, "locked")
    assert calc.lock_held is True
    rpc(calc, client, "unlocked")
    assert calc.lock_held is False


def test_asynchronous_commands_answer_later_exactly_once(calc, client):
    calc.process_message_from(client, {"command": "later", "params": {"value": 5}, "callId": 9})
    assert client.frames == []  # no reply yet, not even data: null
    client.wait_frames(1)
    assert answers(client) == [{"type": "response", "callId": 9, "data": 5}]
    req = calc.pending[0]
    assert req.resolved
    with pytest.raises(RuntimeError):
        req.reply(1)
    with pytest.raises(RuntimeError):
        req.error("x")
    assert client.frames == []
    calc.process_message_from(client, {"command": "laterError", "params": {}, "callId": 10})
    client.wait_frames(1)
    assert answers(client) == [{"type": "error", "callId": 10, "message": "Nope"}]


def test_overriding_without_decorator_removes_the_command(client):
    class Sub(Calc):
        def add(self, req, a, b=0):
            return 0
    assert rpc(Sub(), client, "add", {"a": 1})["message"] == "Unknown command"


def test_subclass_inherits_and_extends_commands(client):
    class Sub(Calc):
        @rpc_command
        def mul(self, req, a, b):
            return a * b
    s = Sub()
    assert rpc(s, client, "mul", {"a": 2, "b": 3})["data"] == 6
    assert rpc(s, client, "add", {"a": 2})["data"] == 2


def test_commands_must_take_named_params():
    with pytest.raises(TypeError):
        class Bad(RPCService):
            @rpc_command
            def f(self, req, *args):
                pass


def test_broadcast_queues_the_same_bytes_object():
    s = Service("s")
    clients = [FakeClient() for _ in range(5)]
    assert s.broadcast(clients, {"type": "x"}) == 5
    first = clients[0].frames[0]
    assert all(c.frames[0] is first for c in clients)


def test_service_names_must_be_strings():
    with pytest.raises(ValueError):
        Service("")
    with pytest.raises(TypeError, match="got int"):
        Service(3)


def test_req_spawn_answers_exactly_once_whatever_the_work_does(calc, client, caplog):
    expected = {"ab": {"type": "response", "callId": "ab", "data": "abab"},
                "rpc_error": {"type": "error", "callId": "rpc_error", "message": "Bad how"},
                "crash": {"type": "error", "callId": "crash", "message": "Internal error"},
                "not_json": {"type": "error", "callId": "not_json", "message": "Internal error"},
                "answers_itself": {"type": "response", "callId": "answers_itself", "data": "mine"}}
    for how in expected:
        calc.process_message_from(client, {"command": "spawned", "params": {"how": how}, "callId": how})
    client.wait_frames(len(expected))
    got = answers(client)
    assert sorted(got, key=lambda m: m["callId"]) == sorted(expected.values(), key=lambda m: m["callId"])
    assert "ZeroDivisionError" in caplog.text  # the traceback goes to the log, not the client
