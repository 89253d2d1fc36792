// The shell's "Report" link downloads /api/v1/report for what the page shows: its run, epoch
// and compared run are in the page's URL (written by the page with history.replaceState).
document.addEventListener("click", (event) => {
  const link = event.target.closest && event.target.closest("#shell-report");
  if (!link) return;
  const shown = new URLSearchParams(window.location.search);
  const query = new URLSearchParams();
  const run = shown.get("run");
  if (run) query.set("run", run);
  for (const key of ["epoch", "compare"]) {
    if (shown.get(key)) query.set(key, shown.get(key));
  }
  link.href = "/api/v1/report" + (query.toString() ? "?" + query.toString() : "");
}, true);
