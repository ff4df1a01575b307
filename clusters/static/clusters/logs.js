// The live log of a workload page (or, merged, of a deployment's workloads, each line after its
// workload's name): server-sent events, followed by default, with pause, a tail size and stdout/stderr
// told apart. The page stays bounded: at most `keep` lines.
(function () {
  "use strict";
  const panel = document.getElementById("log");
  if (!panel) return;
  const out = panel.querySelector("pre");
  const state = panel.querySelector("[data-log-state]");
  const pause = panel.querySelector("[data-log-pause]");
  const tailInput = panel.querySelector("[data-log-tail]");
  const keep = 5000;
  const merged = Boolean(panel.dataset.merged);
  let source = null;
  let paused = false;

  function say(text) { state.textContent = text; }

  function add(line) {
    const row = document.createElement("span");
    const failed = line.error !== undefined;
    row.className = "log-line log-" + (failed ? "error" : line.stream);
    row.textContent = (line.name ? line.name + " | " : "") + (failed ? line.error : line.data) + "\n";
    row.title = failed ? "no more lines of " + line.name : line.time + " " + line.stream;
    const atBottom = out.scrollTop + out.clientHeight >= out.scrollHeight - 4;
    out.appendChild(row);
    while (out.childNodes.length > keep) out.removeChild(out.firstChild);
    if (atBottom && !paused) out.scrollTop = out.scrollHeight;
  }

  function open() {
    if (source) source.close();
    out.textContent = "";
    const url = panel.dataset.url + "?tail=" + encodeURIComponent(tailInput.value || "100");
    source = new EventSource(url);
    say("following");
    // A merged log starts again from its tails when it reconnects: no line twice on the page.
    source.addEventListener("open", function () { if (merged) out.textContent = ""; });
    source.addEventListener("line", function (e) { if (!paused) add(JSON.parse(e.data)); });
    source.addEventListener("error", function (e) {
      if (e.data) { say("the node does not answer: " + JSON.parse(e.data)); }
      else if (source.readyState === EventSource.CONNECTING) { say("reconnecting…"); }
    });
    source.addEventListener("end", function () { say(panel.dataset.ended || (merged ? "the logs ended (the containers stopped)" : "the log ended (the container stopped)")); source.close(); });
  }

  pause.addEventListener("click", function () {
    paused = !paused;
    pause.textContent = paused ? "Follow" : "Pause";
    pause.setAttribute("aria-pressed", String(paused));
    if (paused) { say("paused"); if (source) source.close(); source = null; } else { open(); }
  });
  tailInput.addEventListener("change", function () { if (!paused) open(); });
  // A deployment that has just finished has its containers now: its page's merged log opens again.
  document.body.addEventListener("eru-logs-reopen", function () { if (!paused) open(); });
  open();
})();
