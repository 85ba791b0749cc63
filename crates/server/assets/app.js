// Weir's pages are rendered by the server; this only follows the live ones.
// An element with data-live="URL" is replaced by each server-sent event from
// URL; the event "done" replaces it one last time and closes the stream.
document.querySelectorAll("[data-live]").forEach((el) => {
  const source = new EventSource(el.dataset.live);
  const banner = document.createElement("p");
  banner.className = "live-note";
  banner.textContent = "live";
  el.before(banner);
  source.onmessage = (e) => {
    el.innerHTML = e.data;
    banner.textContent = "live · updated " + new Date().toLocaleTimeString();
    banner.classList.remove("stale");
  };
  source.addEventListener("done", (e) => {
    if (e.data) el.innerHTML = e.data;
    banner.textContent = "finished";
    source.close();
  });
  source.addEventListener("trouble", (e) => {
    banner.textContent = "cannot reach the metadata database: " + e.data + " (retrying)";
    banner.classList.add("stale");
  });
  source.onerror = () => {
    banner.textContent = "connection to the server lost; retrying";
    banner.classList.add("stale");
  };
});
