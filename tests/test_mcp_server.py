"""`rag mcp` through the MCP SDK's own client over stdio: the command an MCP client's config
runs, as a subprocess, on the demo index. One session calls every tool; the tests read its
results."""

from __future__ import annotations

import json
import re
import sys
from importlib.metadata import version
from pathlib import Path

import anyio
import pytest

import fakes
from mcp import Client, StdioServerParameters

ROOT = Path(__file__).resolve().parents[1]


def readme_mcp() -> tuple[list[list[str]], dict]:
    """README's MCP section: the rows of its tool table, and the server entry of its client config."""
    section = (ROOT / "README.md").read_text(encoding="utf-8").split("### Agents: the MCP server")[1].split("\n## ")[0]
    rows = [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in section.splitlines()
            if line.startswith("| `")]
    config = json.loads(re.search(r"```json\n(.*?)```", section, re.DOTALL).group(1))
    return rows, config["mcpServers"]["cablerag"]


README_TOOLS, README_SERVER = readme_mcp()
CABLE = "09PHNOMPENH637"
ARRESTS = "police had made 100 TIP arrests in the first six months of 2009"

CALLS = {
    "search": ("search", {"query": "TIP arrests by Cambodian police in the first six months of 2009", "k": 5}),
    "search_filtered": ("search", {"query": "arrests", "filters": {"origin": "Embassy Phnom Penh", "tag": "KTIP"}}),
    "ask": ("ask", {"question": "Who leads Cambodia's police TIP response?"}),
    "refused": ("ask", {"question": "Who won Cambodia's 2013 national election?"}),
    "cable": ("get_cable", {"cable_id": CABLE.lower()}),
    "paragraph": ("get_paragraph", {"cable_id": CABLE, "paragraph": 1}),
    "no_cable": ("get_cable", {"cable_id": "09NOWHERE123"}),
    "not_an_id": ("get_cable", {"cable_id": "../../etc/passwd"}),
    "no_paragraph": ("get_paragraph", {"cable_id": CABLE, "paragraph": 99}),
    "bad_filter": ("search", {"query": "arrests", "filters": {"planet": "Mars"}}),
    "bad_date": ("ask", {"question": "Who was arrested?", "filters": {"date_from": "last year"}}),
    "k_too_big": ("search", {"query": "arrests", "k": 5000}),
    "check": ("check", {"text": "Lt. General Kang said the Cambodian police made 300 TIP-related arrests in the "
                                 f"first six months of 2009 [{CABLE} ¶6]. Police made 100 TIP arrests in the first "
                                 f"six months of 2009 [{CABLE} ¶7]."}),
    **{f"readme_{row[0].strip('`')}": (row[0].strip("`"), json.loads(row[2].strip("`"))) for row in README_TOOLS},
}


@pytest.fixture(scope="module")
def session(fake_demo) -> dict:
    # README's client config, run as written but for the index and the interpreter (this checkout's,
    # running the CLI with the fake encoder that built the index: tests/fakes.py).
    args = list(README_SERVER["args"])
    args[args.index("--index") + 1] = str(fake_demo.index_dir)
    params = StdioServerParameters(command=sys.executable, cwd=ROOT, env={"HF_HUB_OFFLINE": "1"},
                                   args=[fakes.__file__, *args])
    stray: list[Exception] = []  # what reached the client's stdin and was not a protocol message

    async def on_message(message) -> None:
        if isinstance(message, Exception):
            stray.append(message)

    async def run() -> dict:
        async with Client(params, message_handler=on_message, read_timeout_seconds=300) as client:
            out = {"tools": (await client.list_tools()).tools, "server_info": client.server_info}
            for name, (tool, arguments) in CALLS.items():
                out[name] = await client.call_tool(tool, arguments)
            return out

    out = anyio.run(run)
    out["stray"] = stray
    return out


def ok(session, name) -> dict:
    result = session[name]
    assert not result.is_error, result.content[0].text
    return result.structured_content


def error(session, name) -> str:
    result = session[name]
    assert result.is_error
    return result.content[0].text


def test_the_tools_are_listed_read_only_with_their_parameters(session):
    tools = {t.name: t for t in session["tools"]}
    assert set(tools) == {"search", "ask", "get_cable", "get_paragraph", "check"}
    assert all(t.annotations.read_only_hint and t.description for t in tools.values())
    assert set(tools["search"].input_schema["properties"]) == {"query", "filters", "k"}
    assert tools["get_paragraph"].input_schema["required"] == ["cable_id", "paragraph"]


def test_the_server_reports_the_package_version(session):
    info = session["server_info"]
    assert (info.name, info.version) == ("cablerag", version("cablerag")) and info.version


def test_readme_names_each_tools_arguments_as_its_schema_does(session):
    schemas = {t.name: t.input_schema for t in session["tools"]}
    assert README_SERVER["command"].endswith("/bin/rag") and README_SERVER["args"][0] == "mcp"
    assert [row[0].strip("`") for row in README_TOOLS] == list(schemas)
    for tool, arguments, *_ in README_TOOLS:
        named = re.findall(r"`(\w+)`( \(optional)?", arguments)
        schema = schemas[tool.strip("`")]
        assert [name for name, _ in named] == list(schema["properties"]), tool
        assert [name for name, optional in named if not optional] == schema.get("required", []), tool


@pytest.mark.parametrize("tool", ["search", "ask", "get_cable", "get_paragraph", "check"])
def test_readme_examples_run_as_written(session, tool):
    result = ok(session, f"readme_{tool}")
    assert result and CABLE in json.dumps(result, ensure_ascii=False)


def test_stdout_carries_only_the_protocol(session):
    assert session["stray"] == []


def test_search_finds_the_paragraph_with_its_tag_score_and_text(session):
    found = ok(session, "search")["paragraphs"]
    assert len(found) == 5 and [p["score"] for p in found] == sorted((p["score"] for p in found), reverse=True)
    first = next(p for p in found if p["tag"] == f"[{CABLE} ¶1]")
    assert (first["cable_id"], first["paragraph"], first["origin"]) == (CABLE, 1, "Embassy Phnom Penh")
    assert ARRESTS in first["text"] and first["score"] > 0


def test_search_filters_restrict_the_paragraphs(session):
    result = ok(session, "search_filtered")
    assert result["filters"] == {"origin": "Embassy Phnom Penh", "tag": "KTIP"}
    assert result["paragraphs"] and {p["origin"] for p in result["paragraphs"]} == {"Embassy Phnom Penh"}


def test_ask_answers_with_verified_citations_and_their_paragraphs(session):
    answer = ok(session, "ask")
    assert not answer["refused"] and "Kang Sokhorn" in answer["answer"] and f"[{CABLE} ¶1]" in answer["answer"]
    cited = next(c for c in answer["citations"] if c["tag"] == f"[{CABLE} ¶1]")
    assert cited["status"] == "supported" and ARRESTS in cited["text"] and cited["subject"]


def test_ask_refuses_with_the_reason(session):
    answer = ok(session, "refused")
    assert answer["refused"] and "2013" in answer["refusal_reason"] and answer["citations"] == []


def test_get_cable_is_the_whole_cable_in_order(session):
    cable = ok(session, "cable")
    assert cable["id"] == CABLE and cable["origin"] == "Embassy Phnom Penh" and "KTIP" in cable["tags"]
    numbers = [p["paragraph"] for p in cable["paragraphs"]]
    assert numbers == sorted(numbers) and numbers[0] == 1 and ARRESTS in cable["paragraphs"][0]["text"]


def test_get_paragraph_is_the_paragraph_with_its_cable(session):
    paragraph = ok(session, "paragraph")
    assert paragraph["tag"] == f"[{CABLE} ¶1]" and paragraph["subject"] == "CAMBODIA: TIP ACTION PLAN DELIVERED"
    assert ARRESTS in paragraph["text"] and paragraph["date"] == "2009-08-28"


def test_check_marks_each_citation_and_suggests_the_paragraph_to_cite(session):
    report = ok(session, "check")
    right, wrong = (claim["citations"][0] for claim in report["claims"])
    assert (right["cable_id"], right["paragraph"], right["status"]) == (CABLE, 6, "supported")
    assert wrong["paragraph"] == 7 and wrong["status"] != "supported"
    assert wrong["suggested"]["cable_id"] == CABLE and wrong["suggested"]["paragraph"] in (1, 6)
    assert report["summary"]["claims"] == report["summary"]["cited"] == 2


@pytest.mark.parametrize("name, says", [
    ("no_cable", "no cable 09NOWHERE123 in this index"),
    ("not_an_id", "not a cable id"),
    ("no_paragraph", f"cable {CABLE} has no ¶99; it has ¶1–¶7"),
    ("bad_filter", "planet"),
    ("bad_date", "date_from must be a date YYYY-MM-DD"),
    ("k_too_big", "less than or equal to 50"),
])
def test_bad_input_is_a_tool_error_that_says_what_is_wrong(session, name, says):
    assert says in error(session, name)
