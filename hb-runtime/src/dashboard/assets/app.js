// hb dashboard: live parts and confirmations. No framework, nothing fetched from elsewhere.
"use strict";

// An element with data-live="URL" is replaced by each `html` event of that event stream; an
// `end` event closes the stream (the browser would otherwise reconnect).
function follow(el) {
  const stream = new EventSource(el.dataset.live);
  stream.addEventListener("html", (e) => {
    el.innerHTML = e.data;
    el.dataset.updates = String(Number(el.dataset.updates || "0") + 1);
  });
  stream.addEventListener("end", () => {
    stream.close();
    el.dataset.ended = "true";
  });
}

// A form with data-confirm="question" is sent only once the question is answered yes.
document.addEventListener("submit", (e) => {
  const question = e.target.dataset && e.target.dataset.confirm;
  if (question && !window.confirm(question)) {
    e.preventDefault();
  }
});

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("[data-live]").forEach(follow);
});
