"""The IVR's pure state machine: every path a caller can take, driven event by event without I/O."""

from __future__ import annotations

import json

from examples.ivr.machine import (
    Action,
    Answer,
    CallEnded,
    CallEstablished,
    CallIncoming,
    CancelMedia,
    CancelTimer,
    Event,
    Finished,
    HangUpCall,
    IvrState,
    KeyPressed,
    Phase,
    PlayPrompts,
    PromptFinished,
    RecordingFinished,
    RecordMessage,
    SaveVoicemail,
    StartTimer,
    SubscribeToTones,
    TimerFired,
    TransferCall,
    TransferFailed,
    step,
)
from examples.ivr.menu import MenuConfig, TextPrompt, load_menu

MENU = """
voice: en-us
greeting: "Hello."
key_timeout: 4
max_retries: 1
give_up: {transfer: operator}
targets:
  operator: {phone: "+14255550100"}
voicemail:
  prompt: "Leave a message."
  max_seconds: 30
  stop_tones: ["#", "*"]
messages:
  invalid: "Invalid."
  timeout: "Timeout."
  too_many: "Too many."
  transferring: "Hold on."
  transfer_failed: "Nobody there."
  goodbye: "Bye."
menus:
  main:
    prompt: "Main menu."
    options:
      "1": {menu: sales}
      "3": voicemail
      "0": {transfer: operator}
      "#": hangup
  sales:
    prompt: ["Sales.", {url: "https://prompts.example/sales.wav", resource_id: "sales-1"}]
    key_timeout: 2
    options:
      "1": {say: "Nine to five."}
      "2": {voicemail: sales}
      "4": {menu: deeper}
      "9": back
  deeper:
    prompt: "Deeper."
    options:
      "9": back
      "5": {say: "Info.", then: main}
"""


class Driver:
    """Feeds events to the machine, keeps its state and the actions of the last step."""

    def __init__(self, text: str = MENU) -> None:
        self.config: MenuConfig = load_menu(text, {})
        self.state = IvrState()
        self.actions: tuple[Action, ...] = ()

    def __call__(self, event: Event) -> tuple[Action, ...]:
        self.state, self.actions = step(self.config, self.state, event)
        # the state always survives a trip through JSON (the stateless workers keep it in Redis)
        assert IvrState.from_dict(json.loads(json.dumps(self.state.to_dict()))) == self.state
        return self.actions

    def play(self) -> PlayPrompts:
        plays = [a for a in self.actions if isinstance(a, PlayPrompts)]
        assert plays, self.actions
        return plays[-1]

    def texts(self) -> list[str]:
        return [p.text if isinstance(p, TextPrompt) else p.url for p in self.play().prompts]

    def finish_prompt(self) -> tuple[Action, ...]:
        return self(PromptFinished(self.play().tag))

    def answered(self) -> None:
        assert self(CallIncoming()) == (Answer(),)
        self(CallEstablished())

    def at_menu(self) -> None:
        """Answered, and the main menu has played: the IVR waits for a key."""
        self.answered()
        self.finish_prompt()


def test_answers_greets_and_waits_for_a_key() -> None:
    d = Driver()
    d.answered()
    assert isinstance(d.actions[0], SubscribeToTones)
    assert d.texts() == ["Hello.", "Main menu."]
    assert d.play().prompts[0] == TextPrompt("Hello.", "en-us")
    assert d.state.phase is Phase.MENU
    actions = d.finish_prompt()
    assert actions == (StartTimer(d.state.pending, 4.0),)
    assert d.state.phase is Phase.WAITING


def test_key_opens_submenu_with_its_own_timeout_and_back_returns() -> None:
    d = Driver()
    d.at_menu()
    timer = d.state.pending
    actions = d(KeyPressed("1"))
    assert actions[0] == CancelTimer(timer)
    assert d.texts() == ["Sales.", "https://prompts.example/sales.wav"]
    assert d.finish_prompt() == (StartTimer(d.state.pending, 2.0),)
    d(KeyPressed("4"))
    assert d.texts() == ["Deeper."]
    d(KeyPressed("9"))  # barge-in: back while "Deeper." plays
    assert isinstance(d.actions[0], CancelMedia)
    assert d.texts() == ["Sales.", "https://prompts.example/sales.wav"] and d.state.menu == "sales"
    d(KeyPressed("9"))
    assert d.state.menu == "main" and d.state.stack == ()
    assert d.state.keys == "1499"


def test_barge_in_cancels_the_prompt_and_its_late_completion_is_ignored() -> None:
    d = Driver()
    d.answered()
    menu_tag = d.play().tag
    actions = d(KeyPressed("1"))
    assert isinstance(actions[0], CancelMedia) and isinstance(actions[1], PlayPrompts)
    sales_tag = d.play().tag
    assert d(PromptFinished(menu_tag, ok=False)) == ()  # the cancelled prompt reports failure later
    assert d.state.phase is Phase.MENU and d.state.pending == sales_tag
    assert isinstance(d(PromptFinished(sales_tag))[0], StartTimer)
    assert d(PromptFinished(sales_tag)) == ()  # a duplicate delivery changes nothing


def test_say_plays_information_then_the_menu_again() -> None:
    d = Driver()
    d.at_menu()
    d(KeyPressed("1"))
    d(KeyPressed("1"))
    assert d.texts() == ["Nine to five.", "Sales.", "https://prompts.example/sales.wav"]
    assert d.state.menu == "sales" and d.state.stack == ("main",)
    d(KeyPressed("4"))
    d(KeyPressed("5"))  # say, then: main
    assert d.texts() == ["Info.", "Main menu."] and d.state.menu == "main"


def test_invalid_key_retries_then_gives_up_to_the_operator() -> None:
    d = Driver()
    d.at_menu()
    d(KeyPressed("7"))
    assert d.texts() == ["Invalid.", "Main menu."] and d.state.retries == 1
    d.finish_prompt()
    d(KeyPressed("8"))  # max_retries: 1 -> give up
    assert d.texts() == ["Too many.", "Hold on."] and d.state.phase is Phase.TRANSFER_PROMPT
    (transfer,) = d.finish_prompt()
    assert isinstance(transfer, TransferCall) and transfer.name == "operator"
    assert transfer.target.to_graph()["identity"]["phone"]["id"] == "+14255550100"
    assert d(CallEnded()) == (Finished("transferred:operator", "78"),)


def test_timeout_replays_the_menu_and_a_stale_timer_is_ignored() -> None:
    d = Driver()
    d.at_menu()
    first = d.state.pending
    d(TimerFired(first))
    assert d.texts() == ["Timeout.", "Main menu."] and d.state.retries == 1
    replay = d.play().tag
    assert d(TimerFired(first)) == ()  # the same timer again (fired twice, or by two workers)
    d(PromptFinished(replay))
    second = d.state.pending
    d(KeyPressed("1"))
    assert d(TimerFired(second)) == ()  # fired while the key was being handled
    assert d.state.menu == "sales" and d.state.retries == 0


def test_voicemail_records_saves_says_goodbye_and_hangs_up() -> None:
    d = Driver()
    d.at_menu()
    d(KeyPressed("1"))
    d.finish_prompt()
    actions = d(KeyPressed("2"))
    record = actions[-1]
    assert isinstance(record, RecordMessage)
    assert record.prompt == TextPrompt("Leave a message.", "en-us")
    assert (record.max_seconds, record.stop_tones, record.beep) == (30, ("#", "*"), True)
    assert d(KeyPressed("5")) == ()  # keys while recording belong to the recording
    actions = d(RecordingFinished(record.tag, "https://node/media/recordings/r1", "tok", "stopToneDetected"))
    assert actions[0] == SaveVoicemail("sales", "https://node/media/recordings/r1", "tok")
    assert d.texts() == ["Thank you, your message has been saved.", "Bye."]
    assert d.finish_prompt() == (HangUpCall(),)
    assert d(CallEnded()) == (Finished("voicemail:sales", "12"),)


def test_voicemail_without_a_message() -> None:
    d = Driver()
    d.at_menu()
    record = d(KeyPressed("3"))[-1]
    assert isinstance(record, RecordMessage)
    d(RecordingFinished(record.tag, None, None, "initialSilenceTimeout"))
    assert d.texts() == ["Sorry, I did not get a message.", "Bye."]
    d.finish_prompt()
    assert d(CallEnded()) == (Finished("no message", "3"),)


def test_give_up_into_voicemail_says_why_before_the_recording() -> None:
    d = Driver(
        MENU.replace("give_up: {transfer: operator}", "give_up: voicemail").replace("max_retries: 1", "max_retries: 0")
    )
    d.at_menu()
    actions = d(KeyPressed("6"))
    assert isinstance(actions[1], PlayPrompts) and actions[1].tag == 0
    assert [p.text for p in actions[1].prompts if isinstance(p, TextPrompt)] == ["Too many."]
    assert isinstance(actions[2], RecordMessage)


def test_failed_transfer_returns_to_the_menu() -> None:
    d = Driver()
    d.at_menu()
    d(KeyPressed("0"))
    assert d.texts() == ["Hold on."]
    assert isinstance(d.finish_prompt()[0], TransferCall)
    assert d.state.phase is Phase.TRANSFERRING
    d(TransferFailed("480"))
    assert d.texts() == ["Nobody there.", "Main menu."]
    assert d.state.phase is Phase.MENU and d.state.target is None
    d.finish_prompt()
    d(KeyPressed("0"))
    d.finish_prompt()
    d(CallEstablished())  # the call came back to established: the transfer failed too
    assert d.texts() == ["Nobody there.", "Main menu."] and d.state.phase is Phase.MENU
    assert d(CallEstablished()) == ()


def test_hangup_option_and_caller_hanging_up() -> None:
    d = Driver()
    d.at_menu()
    d(KeyPressed("#"))
    assert d.texts() == ["Bye."] and d.state.phase is Phase.CLOSING
    assert d.finish_prompt() == (HangUpCall(),)
    assert d(CallEnded()) == (Finished("hangup", "#"),)
    assert d(KeyPressed("1")) == () and d(CallEnded()) == ()  # nothing happens after the end

    d = Driver()
    d.at_menu()
    timer = d.state.pending
    assert d(CallEnded()) == (CancelTimer(timer), Finished("caller hung up", ""))
