"""The web page (`peft-shine web`), driven as people drive it: `gradio_client` against a live server on a free port
(absorb, ask, compare, compose, download, bad input, two users at once, a 300-cycle soak), the console script, and
headless Chromium through Selenium.

The model is a tiny random SHINE whose memory statistics are calibrated, so its answers are gibberish but differ from
one document to another: an answer from the wrong session's document would show.
"""

from __future__ import annotations

import gc
import os
import re
import shutil
import socket
import sys
import threading
import time
import zipfile
from importlib.resources import files
from pathlib import Path

import httpx
import pytest
import torch

pytest.importorskip("gradio", reason="needs the web extra: pip install -e '.[web]' (make setup installs it)")

from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402
from peft import PeftModel  # noqa: E402

from peft_shine.tokenization import ICL_TEMPLATE  # noqa: E402
from peft_shine.web import ANSWER_TITLES, ShineEngine, WebLimits, answer_messages, build_app, launch  # noqa: E402
from peft_shine.web.app import SAMPLE_NAME  # noqa: E402
from tests.helpers import CONTEXTS, build_model, build_shine  # noqa: E402

# gradio 6.31's queue calls pandas options that pandas 3 deprecates, once per request: noise, not ours
pytestmark = pytest.mark.filterwarnings("ignore::Warning:gradio.queueing")

LIMITS = WebLimits(max_new_tokens=8, max_documents=4)
QUESTIONS = [f"Question {i}: who built it, and when?" for i in range(20)]
SAMPLE = (files("peft_shine") / "assets" / "sample_document.md").read_text(encoding="utf-8")
MB = 1024 * 1024


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def shine(tokenizer):
    model = build_shine("llama", len(tokenizer), lora_scale=1e-2)
    model.base_model.resolve_tokenizer(tokenizer)
    model.calibrate_memory_statistics(CONTEXTS * 3)
    return model


@pytest.fixture(scope="module")
def server(shine, tokenizer):
    demo = build_app(shine, tokenizer, limits=LIMITS)
    url = launch(demo, LIMITS, port=free_port(), block=False)
    yield url
    demo.close()


class User:
    """One browser session, through `gradio_client`, calling the page's endpoints one at a time."""

    def __init__(self, url: str) -> None:
        # ssl_verify=False: plain HTTP to localhost; it also spares loading CA certificates on every call (~60 ms CPU)
        self.client = Client(url, verbose=False, ssl_verify=False)

    def call(self, *arguments, api_name: str):
        """`predict`, then wait until gradio_client has closed its event stream: a call submitted while the server is
        closing the stream is cancelled on the client side (a gradio_client 2.7 race; the server still runs it)."""
        try:
            return self.client.predict(*arguments, api_name=api_name)
        finally:
            deadline = time.monotonic() + 5
            while getattr(self.client, "stream_open", False) and time.monotonic() < deadline:
                time.sleep(0.002)

    def absorb(self, text: str = "", file=None, name: str = ""):
        """-> (stats Markdown, document choices update, paste, upload, name)."""
        return self.call(text, handle_file(file) if file else None, name, api_name="/absorb")

    def ask(self, question: str, chosen: list[str], compare: bool = False, history=()):
        """-> (chat history, question box)."""
        return self.call(question, list(history), chosen, compare, api_name="/ask")

    def answer(self, question: str, chosen: list[str], compare: bool = False) -> str:
        return answer_of(self.ask(question, chosen, compare)[0])

    def export(self, chosen: list[str]) -> str:
        return self.call(chosen, api_name="/export")

    def remove(self, chosen: list[str]):
        """-> (stats Markdown, document choices update)."""
        return self.call(chosen, api_name="/remove")


def names(choices) -> list[str]:
    return [name for name, _ in choices["choices"]]


def alone(model, context, questions, compose=False) -> list[str]:
    """Answers with only `context` absorbed, by the plain library API (the server is idle meanwhile)."""
    with model.absorbed(context, compose=compose):
        return [model.ask(question, max_new_tokens=LIMITS.max_new_tokens) for question in questions]


def without_context(model, question, document=None) -> str:
    """The base model's answer: no context, or `document` in the prompt."""
    model.forget()
    prompt = question if document is None else ICL_TEMPLATE.format(context=document, question=question)
    return model.ask(prompt, max_new_tokens=LIMITS.max_new_tokens)


def text_of(message) -> str:
    """The text of a chat message (Gradio returns content blocks)."""
    content = message["content"]
    return content if isinstance(content, str) else "".join(block["text"] for block in content)


def answer_of(history) -> str:
    """The text of the chat's last message."""
    return text_of(history[-1])


def lora_logits(zip_path, base, ids):
    """Logits of a fresh base with the zipped plain PEFT LoRA loaded by `PeftModel.from_pretrained`."""
    folder = Path(zip_path).with_suffix("")
    with zipfile.ZipFile(zip_path) as archive:
        archive.extractall(folder)
    with torch.no_grad():
        return PeftModel.from_pretrained(base, folder).eval()(ids).logits


def shine_logits(model, context, ids, compose=False):
    with torch.no_grad(), model.absorbed(context, compose=compose):
        return model(input_ids=ids).logits


def test_absorb_ask_compare_and_download_a_plain_peft_lora(server, shine, tokenizer, tmp_path):
    user = User(server)
    stats, choices, paste, upload, name = user.absorb(CONTEXTS[0], name="lighthouse")
    tokens = len(tokenizer(CONTEXTS[0], add_special_tokens=False)["input_ids"])
    assert f"**lighthouse**: {tokens} tokens, 1 chunk(s), rank 2, absorbed in" in stats
    assert choices["value"] == ["lighthouse"] and (paste, upload, name) == ("", None, "")

    question = QUESTIONS[0]
    history, cleared = user.ask(question, ["lighthouse"])
    expected = alone(shine, CONTEXTS[0], [question])[0]
    assert answer_of(history) == expected and cleared == ""
    assert history[0]["role"] == "user" and answer_of(history[:1]) == question

    history, _ = user.ask(question, ["lighthouse"], compare=True, history=history)
    without, in_prompt = without_context(shine, question), without_context(shine, question, CONTEXTS[0])
    parts = [(message["metadata"]["title"], text_of(message)) for message in history[-3:]]  # labelled, separate
    assert len(history) == 6 and parts == list(zip(ANSWER_TITLES, (expected, without, in_prompt)))
    assert [m["role"] for m in history[-3:]] == ["assistant"] * 3
    assert answer_messages("only") == [{"role": "assistant", "content": "only"}]  # without compare: one plain reply
    assert expected != without  # absorbing changed the answer, so the comparison shows something

    zip_path = user.export(["lighthouse"])
    assert Path(zip_path).name == "lighthouse-lora.zip"
    direct = tmp_path / "direct"
    shine.absorb_context(CONTEXTS[0]).save_pretrained(direct)
    shine.forget()
    with zipfile.ZipFile(zip_path) as archive:
        assert sorted(archive.namelist()) == sorted(os.listdir(direct))
        assert {"adapter_config.json", "adapter_model.safetensors"} <= set(archive.namelist())
    ids = torch.tensor([tokenizer("Who built the lighthouse on Marrow Point?")["input_ids"]])
    exported = lora_logits(zip_path, build_model("llama", len(tokenizer)), ids)
    assert torch.allclose(exported, shine_logits(shine, CONTEXTS[0], ids), atol=1e-5, rtol=1e-5)
    with torch.no_grad():
        assert (exported - build_model("llama", len(tokenizer))(ids).logits).abs().max() > 1e-3


def test_uploads_compose_and_remove(server, shine, tokenizer, tmp_path):
    user = User(server)
    (tmp_path / "harbour.md").write_text(CONTEXTS[0], encoding="utf-8")
    (tmp_path / "kitchen.txt").write_text(CONTEXTS[1], encoding="utf-8")
    user.absorb(file=tmp_path / "harbour.md")
    stats, choices, *_ = user.absorb(file=tmp_path / "kitchen.txt")
    assert names(choices) == ["harbour", "kitchen"] and choices["value"] == ["kitchen"]
    assert "2 of 4 documents" in stats

    questions = QUESTIONS[:3]
    composed = [user.answer(question, ["harbour", "kitchen"]) for question in questions]
    assert composed == alone(shine, CONTEXTS[:2], questions, compose=True)
    assert composed != alone(shine, CONTEXTS[0], questions) and composed != alone(shine, CONTEXTS[1], questions)

    zip_path = user.export(["harbour", "kitchen"])
    assert Path(zip_path).name == "harbour+kitchen-lora.zip"
    ids = torch.tensor([tokenizer("Where did Mary go?")["input_ids"]])
    exported = lora_logits(zip_path, build_model("llama", len(tokenizer)), ids)
    assert torch.allclose(exported, shine_logits(shine, CONTEXTS[:2], ids, compose=True), atol=1e-5, rtol=1e-5)

    stats, choices = user.remove(["harbour"])
    assert names(choices) == ["kitchen"] and "harbour" not in stats
    assert user.answer(questions[0], ["kitchen"]) == alone(shine, CONTEXTS[1], questions[:1])[0]


@pytest.mark.parametrize("combination", ["mean", "sum"])
def test_composing_kept_contexts_equals_absorbing_them_composed(shine, tokenizer, combination):
    """The page composes the AbsorbedContext objects a session keeps; that must equal absorb_context(compose=True),
    also for chunked documents."""
    config = shine.base_model.shine_config
    saved = config.chunk_combination, config.max_context_tokens
    config.chunk_combination, config.max_context_tokens = combination, 12
    try:
        engine = ShineEngine(shine, tokenizer)
        contexts = [engine.absorb(text)[0] for text in CONTEXTS]
        assert [c.num_chunks[0] for c in contexts] != [1, 1, 1]
        composed = engine.compose(contexts)
        reference = shine.absorb_context(CONTEXTS, compose=True)
        shine.forget()
        assert composed.num_chunks == reference.num_chunks and composed.ranks == reference.ranks
        for key, (a, _) in reference.factors.items():
            assert torch.allclose(composed.delta_weight(key), reference.delta_weight(key), atol=1e-6)
            assert composed.factors[key][0].shape == a.shape
    finally:
        config.chunk_combination, config.max_context_tokens = saved


def test_bad_input_gets_a_clear_message_and_loses_nothing(server, shine, tmp_path):
    user = User(server)
    with pytest.raises(AppError, match="No document is absorbed yet"):
        user.ask(QUESTIONS[0], [])
    user.absorb(CONTEXTS[2], name="report")
    before = user.answer(QUESTIONS[0], ["report"])

    binary = tmp_path / "photo.txt"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe" + bytes(range(256)))
    (tmp_path / "nul.md").write_text("text\x00with a NUL", encoding="utf-8")
    (tmp_path / "empty.md").write_text(" \n", encoding="utf-8")
    (tmp_path / "picture.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    (tmp_path / "big.txt").write_text("x" * (5 * MB), encoding="utf-8")
    for arguments, message in [
        ({"text": ""}, "The pasted text is empty"),
        ({"text": " \n\t"}, "The pasted text is empty"),
        ({"text": "x" * (5 * MB)}, "has 5,242,880 characters; this server absorbs at most 50,000 per document"),
        ({"file": binary}, "photo.txt is not UTF-8 text .* binary file"),
        ({"file": tmp_path / "nul.md"}, "nul.md contains NUL bytes"),
        ({"file": tmp_path / "empty.md"}, "empty.md is empty"),
        ({"file": tmp_path / "picture.png"}, "Invalid file type"),
        ({"file": tmp_path / "big.txt"}, "big.txt exceeds the maximum file size"),  # gradio_client refuses to send it
        ({"text": "text", "file": tmp_path / "empty.md"}, "Both a pasted text and a file"),
    ]:
        with pytest.raises((AppError, ValueError), match=message):
            user.absorb(**arguments)
    for arguments, message in [
        (("  ", ["report"]), "The question is empty"),
        (("?" * 1001, ["report"]), "at most 1,000 are allowed"),
        ((QUESTIONS[0], []), "No document is chosen"),
        ((QUESTIONS[0], ["nope"]), r"'nope' .* is not in the list of choices: \['report'\]"),
    ]:
        with pytest.raises(AppError, match=message):
            user.ask(*arguments)
    with pytest.raises(AppError, match="Choose the document"):
        user.remove([])

    for index in range(LIMITS.max_documents - 1):
        user.absorb(CONTEXTS[index % 3], name=f"more {index}")
    with pytest.raises(AppError, match="already holds 4 documents"):
        user.absorb(CONTEXTS[0], name="one too many")

    assert user.answer(QUESTIONS[0], ["report"]) == before == alone(shine, CONTEXTS[2], QUESTIONS[:1])[0]
    assert User(server).absorb(CONTEXTS[0])[1]["value"] == ["pasted text"]  # the server is up for a new session


def test_two_users_at_once_get_their_own_documents_answers(server, shine):
    references = [alone(shine, CONTEXTS[i], QUESTIONS) for i in range(2)]
    assert sum(a != b for a, b in zip(*references)) >= 15  # the documents answer differently: crosstalk would show
    users = [User(server) for _ in range(2)]
    for index, user in enumerate(users):
        user.absorb(CONTEXTS[index], name=f"doc{index}")
    answers, finished, start = [[], []], [], threading.Barrier(2)

    def ask_all(index: int) -> None:
        start.wait()
        for question in QUESTIONS:
            answers[index].append(users[index].answer(question, [f"doc{index}"]))
            finished.append(index)

    threads = [threading.Thread(target=ask_all, args=(index,)) for index in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert answers == references
    switches = sum(a != b for a, b in zip(finished, finished[1:]))
    assert switches >= 10, f"the two users' requests did not interleave: {finished}"


def rss_bytes() -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmRSS:"))


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads RSS from /proc (Linux only)")
def test_soak_300_absorb_and_ask_cycles_keep_rss_growth_under_100_mb(server):
    """300 absorb + ask cycles by 3 users at once (100 each, every document different; a user removes its documents
    when its session is full), after 30 warm-up cycles: the RSS of the process (server and clients) grows < 100 MB."""
    users = [User(server) for _ in range(3)]

    def cycles(user: User, first: int, count: int) -> None:
        for cycle in range(first, first + count):
            _, choices, *_ = user.absorb(f"{CONTEXTS[cycle % 3]} Cycle {cycle}.")
            assert user.answer(QUESTIONS[cycle % 20], choices["value"])
            if len(choices["choices"]) == LIMITS.max_documents:
                user.remove(names(choices))

    def run(per_user: int, offset: int) -> None:
        threads = [
            threading.Thread(target=cycles, args=(user, offset + index * per_user, per_user))
            for index, user in enumerate(users)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    run(10, 0)
    gc.collect()
    before = rss_bytes()
    started, cpu = time.perf_counter(), time.process_time()
    run(100, 1000)
    gc.collect()
    growth = rss_bytes() - before
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    print(f"soak: 300 absorb+ask cycles in {seconds:.1f} s ({cpu:.1f} s CPU), RSS growth {growth / MB:.1f} MB")
    assert growth < 100 * MB


def test_web_command_serves_the_page(saved_base, shine, tmp_path, monkeypatch):
    """`peft-shine web --base B --adapter A --share ...` as parsed and loaded by the console script; only the final
    blocking launch is made non-blocking (and local: `--share` is recorded, not used) so the test can drive the page."""
    import peft_shine.web
    from peft_shine.cli import main

    adapter = tmp_path / "shine"
    shine.save_pretrained(adapter)
    launched = []
    monkeypatch.setattr(
        peft_shine.web,
        "launch",
        lambda demo, limits, host, port, share: launched.append((demo, launch(demo, limits, host, port, False), share)),
    )
    port = free_port()
    common = ["--base", str(saved_base), "--adapter", str(adapter), "--port", str(port), "--max-chars", "1000"]
    main(["web", *common, "--share"])
    demo, url, share = launched[0]
    assert share  # passed through to Gradio's launch(share=True)
    try:
        assert url == f"http://127.0.0.1:{port}/"
        user = User(url)
        stats, *_ = user.absorb(CONTEXTS[0], name="doc")
        assert "**doc**:" in stats and isinstance(user.answer("Who?", ["doc"]), str)
        with pytest.raises(AppError, match="at most 1,000 per document"):
            user.absorb("y" * 1001)
        page = httpx.get(f"{url}config").text
        assert str(adapter) in page and str(saved_base) in page and "1,000 characters" in page
    finally:
        demo.close()


def test_web_command_without_the_extra_says_how_to_install_it(monkeypatch):
    from peft_shine.cli import main

    for name in [name for name in sys.modules if name == "gradio" or name.startswith("peft_shine.web")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "gradio", None)
    with pytest.raises(SystemExit, match=r"pip install 'peft-shine\[web\]'"):
        main(["web"])


# --------------------------------------------------------------------------------------------------------------------
# A real browser


def _browser():
    webdriver = pytest.importorskip("selenium.webdriver", reason="needs Selenium: pip install -e '.[test]'")
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        pytest.skip("Chromium is not installed: apt-get install chromium chromium-driver (.ci/run does this)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1500"):
        options.add_argument(argument)
    return webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=driver))


def _wait(condition, timeout: float = 60, message: str = "condition"):
    """Poll `condition` until it returns something truthy. An element that the page re-rendered or removed between
    finding it and reading it (a toast closing, a chat re-render) raises StaleElementReferenceException: poll again."""
    from selenium.common.exceptions import StaleElementReferenceException

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = condition()
        except StaleElementReferenceException:
            value = None
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {message}")


def _words(text: str) -> str:
    """Only word characters: the page may show control bytes of a random model's answer differently."""
    return re.sub(r"\W+", "", text)


@pytest.fixture()
def page_model(request, tokenizer):
    """The tiny model; `PEFT_SHINE_WEB_SCREENSHOT=docs/web-screenshot.png` uses the embedded default instead and
    saves the screenshot there (how docs/web-screenshot.png was made)."""
    if os.environ.get("PEFT_SHINE_WEB_SCREENSHOT"):
        from peft_shine.defaults import load_default
        from peft_shine.web.about import describe_model

        model, default_tokenizer = load_default()
        return model, default_tokenizer, WebLimits(), describe_model(model)
    return request.getfixturevalue("shine"), tokenizer, LIMITS, None


def test_browser_absorbs_the_sample_document_and_answers_on_the_page(page_model, tmp_path):
    from selenium.webdriver.common.by import By

    driver = _browser()
    model, tokenizer, limits, about = page_model
    question = "Who is the chair of the Harbour Board?"
    model.forget()
    with model.absorbed(SAMPLE):
        shine_answer = model.ask(question, max_new_tokens=limits.max_new_tokens)
    model.forget()
    prompt = ICL_TEMPLATE.format(context=SAMPLE, question=question)
    expected = [
        shine_answer,
        model.ask(question, max_new_tokens=limits.max_new_tokens),
        model.ask(prompt, max_new_tokens=limits.max_new_tokens),
    ]
    demo = build_app(model, tokenizer, about=about, limits=limits)
    url = launch(demo, limits, port=free_port(), block=False)
    find = driver.find_element

    def toast(text: str) -> str:
        shown = _wait(
            lambda: [
                e.text for e in driver.find_elements(By.CSS_SELECTOR, "[data-testid=toast-body]") if text in e.text
            ],
            message=f"a message containing {text!r}",
        )
        driver.execute_script("document.querySelectorAll('.toast-close').forEach(b => b.click())")
        return shown[0]

    def paste(text: str, repeat: int = 1) -> None:  # what pasting does: set the value, fire an input event
        driver.execute_script(
            "const t = document.querySelector('#paste textarea'); t.value = arguments[0].repeat(arguments[1]);"
            "t.dispatchEvent(new Event('input', {bubbles: true}));",
            text,
            repeat,
        )

    def bot_messages() -> list[str]:
        return [e.text for e in driver.find_elements(By.CSS_SELECTOR, "#chat [data-testid=bot]")]

    def shown(element_id: str) -> bool:
        elements = driver.find_elements(By.ID, element_id)
        return bool(elements) and elements[0].is_displayed()

    try:
        driver.get(url)
        _wait(lambda: driver.find_elements(By.CSS_SELECTOR, "#absorb"), message="the page")
        assert (
            "Loaded:" in find(By.ID, "about").text and f"{limits.max_chars:,} characters" in find(By.ID, "limits").text
        )
        assert not shown("lora")  # the download box appears only with a download
        export, remove = find(By.ID, "export"), find(By.ID, "remove")
        assert (
            export.value_of_css_property("white-space") == "nowrap" and export.size["height"] == remove.size["height"]
        )  # the download label stays on one line, as tall as its neighbour

        find(By.CSS_SELECTOR, "#question textarea").send_keys("Where?")
        find(By.ID, "ask").click()
        toast("No document is absorbed yet")
        find(By.ID, "absorb").click()
        toast("The pasted text is empty")

        engine_absorb = ShineEngine.absorb  # the tiny model absorbs at once: hold it to see the page meanwhile
        gate = threading.Event()

        def held(self, text):
            gate.wait(30)
            return engine_absorb(self, text)

        ShineEngine.absorb = held
        try:
            find(By.ID, "sample").click()  # fills the sample document, its name and a question, then absorbs
            status = _wait(lambda: "Absorbing" in find(By.ID, "absorb-status").text, message="the absorbing status")
            assert status and "Absorbing the pasted text" in find(By.ID, "absorb-status").text
        finally:
            ShineEngine.absorb = engine_absorb
            gate.set()
        stats = _wait(lambda: SAMPLE_NAME in find(By.ID, "stats").text and find(By.ID, "stats").text, message="stats")
        tokens = sum(map(len, model.base_model.context_chunks(SAMPLE, tokenizer)[0]))
        assert f"{tokens} tokens" in stats and "absorbed in" in stats
        _wait(lambda: "Absorbing" not in find(By.ID, "absorb-status").text, message="the status to clear")
        assert find(By.CSS_SELECTOR, "#paste textarea").get_attribute("value") == ""
        assert find(By.CSS_SELECTOR, "#question textarea").get_attribute("value") == question

        find(By.CSS_SELECTOR, "#compare input").click()
        find(By.ID, "ask").click()

        def labelled(answers: list[str]) -> bool:  # three separate messages, each its label and its answer
            parts = zip(ANSWER_TITLES, expected, answers[-3:], strict=True)
            return len(answers) >= 3 and all(t in a and _words(x) in _words(a) for t, x, a in parts)

        _wait(lambda: labelled(bot_messages()), message="three labelled answers")
        screenshot = os.environ.get("PEFT_SHINE_WEB_SCREENSHOT") or str(tmp_path / "web.png")
        driver.save_screenshot(screenshot)

        find(By.ID, "export").click()
        _wait(lambda: shown("lora") and "lorazip" in _words(find(By.ID, "lora").text), message="the download")

        paste("x", 5 * MB)
        find(By.ID, "absorb").click()
        toast("5,242,880 characters")
        paste("")
        binary = tmp_path / "scan.txt"
        binary.write_bytes(b"\x00\xff\xfe" + bytes(range(256)) * 4)
        find(By.CSS_SELECTOR, "#upload input[type=file]").send_keys(str(binary))
        _wait(lambda: "scan" in find(By.ID, "upload").text, message="the upload")
        find(By.ID, "absorb").click()
        toast("scan.txt is not UTF-8 text")
        _wait(lambda: "Absorbing" not in find(By.ID, "absorb-status").text, message="the status to clear on an error")

        find(By.CSS_SELECTOR, "#compare input").click()
        find(By.CSS_SELECTOR, "#question textarea").send_keys(question)
        find(By.ID, "ask").click()
        _wait(lambda: len(bot_messages()) == 4, message="a fourth answer")
        assert _words(bot_messages()[-1]) == _words(shine_answer)
        assert SAMPLE_NAME in find(By.ID, "documents").text
    finally:
        driver.quit()
        demo.close()
