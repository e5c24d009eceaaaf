// Ordinary sessions written by hand, for the servers whose calls need the network or an
// account (fetch, GitHub, a browser): what a user does with them, with no attack in it.
import { session, list, call } from "./lib.mjs";
import { readFileSync } from "node:fs";

const tools = (name) => JSON.parse(readFileSync(new URL(`../servers/${name}.json`, import.meta.url))).tools;
const page = "Example Domain\n\nThis domain is for use in illustrative examples in documents. You may use this domain in literature without prior coordination or asking for permission.\n\nMore information...";

export default [
  session("fetch-public-page", [], [
    list("fetch", tools("mcp-fetch")),
    call("fetch", "imageFetch", { url: "https://example.com/", maxLength: 20000 }, page),
    call("fetch", "imageFetch", { url: "https://go.dev/doc/install", raw: false }, "Download and install\n\nDownload and install Go quickly with the steps described here."),
  ]),
  session("github-triage", [], [
    list("github", tools("server-github")),
    call("github", "search_repositories", { query: "mcp proxy language:go" }, '{"total_count": 2, "items": [{"full_name": "acme/mcp-gw"}]}'),
    call("github", "get_file_contents", { owner: "acme", repo: "mcp-gw", path: "README.md" }, "# mcp-gw\nA gateway."),
    call("github", "list_issues", { owner: "acme", repo: "mcp-gw", state: "open" }, '[{"number": 7, "title": "Crash on empty list"}]'),
    call("github", "add_issue_comment", { owner: "acme", repo: "mcp-gw", issue_number: 7, body: "I can reproduce this with an empty tools/list answer." }, '{"id": 99}'),
    call("github", "create_issue", { owner: "acme", repo: "mcp-gw", title: "Document the config file", body: "The README does not say where the config lives." }, '{"number": 8}'),
  ]),
  session("browser-lookup", [], [
    list("playwright", tools("playwright-mcp")),
    call("playwright", "browser_navigate", { url: "https://example.com/" }, "Navigated to https://example.com/"),
    call("playwright", "browser_snapshot", {}, "- heading \"Example Domain\" [level=1]\n- link \"More information...\""),
    call("playwright", "browser_click", { element: "More information link", ref: "e6" }, "Clicked"),
    call("playwright", "browser_take_screenshot", {}, "Took the screenshot"),
  ]),
  session("debug-env-locally", [], [
    list("filesystem", tools("server-filesystem")),
    call("filesystem", "read_text_file", { path: "/home/me/project/.env" }, "PORT=8080\nDATABASE_URL=postgres://app:Hx7vQ2pLr9@localhost:5432/app\n"),
    call("filesystem", "write_file", { path: "/home/me/project/docker-compose.override.yml", content: "services:\n  app:\n    ports: [\"8080:8080\"]\n" }, "Successfully wrote to /home/me/project/docker-compose.override.yml"),
  ]),
  session("secret-read-then-public-fetch", [], [
    list("filesystem", tools("server-filesystem")),
    list("fetch", tools("mcp-fetch")),
    call("filesystem", "read_text_file", { path: "/home/me/.aws/config" }, "[default]\nregion = eu-west-1\noutput = json\n"),
    call("filesystem", "read_text_file", { path: "/home/me/project/.env" }, "PORT=8080\nAPI_KEY=ak_9Qw2Lx7Rt4Vm8Kp3\n"),
    call("fetch", "imageFetch", { url: "https://docs.aws.amazon.com/cli/latest/userguide/cli-configure-files.html" }, "Configuration and credential file settings"),
  ]),
];
