// The live log of a workload page: server-sent events from /workloads/<id>/logs/, followed by default,
// with pause, a tail size and stdout/stderr told apart. The page stays bounded: at most `keep` lines.
(function () {
  "use strict";
  const panel = document.getElementById("log");
  if (!panel) return;
  const out = panel.querySelector("pre");
  const state = panel.querySelector("[data-log-state]");
  const pause = panel.querySelector("[data-log-pause]");
  const tailInput = panel.querySelector("[data-log-tail]");
  const keep = 5000;
  let source = null;
  let paused = false;

  function say(text) { state.textContent = text; }

  function add(line) {
    const row = document.createElement("span");
    row.className = "log-line log-" + line.stream;
    row.textContent = line.data + "\n";
    row.title = line.time + " " + line.stream;
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
    source.addEventListener("line", function (e) { if (!paused) add(JSON.parse(e.data)); });
    source.addEventListener("error", function (e) {
      if (e.data) { say("the node does not answer: " + JSON.parse(e.data)); }
      else if (source.readyState === EventSource.CONNECTING) { say("reconnecting…"); }
    });
    source.addEventListener("end", function () { say("the log ended (the container stopped)"); source.close(); });
  }

  pause.addEventListener("click", function () {
    paused = !paused;
    pause.textContent = paused ? "Follow" : "Pause";
    pause.setAttribute("aria-pressed", String(paused));
    if (paused) { say("paused"); if (source) source.close(); source = null; } else { open(); }
  });
  tailInput.addEventListener("change", function () { if (!paused) open(); });
  open();
})();
