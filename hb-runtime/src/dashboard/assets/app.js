// hb dashboard: live parts and confirmations. No framework, nothing fetched from elsewhere.
"use strict";

// An element with data-live="URL" is replaced by each `html` event of that event stream; a
// `part` event replaces another element (its id on the first line); an `end` event closes the
// stream (the browser would otherwise reconnect).
function follow(el) {
  const stream = new EventSource(el.dataset.live);
  stream.addEventListener("html", (e) => {
    el.innerHTML = e.data;
    el.dataset.updates = String(Number(el.dataset.updates || "0") + 1);
  });
  // `part`: the element whose id is on the first line gets the HTML of the rest.
  stream.addEventListener("part", (e) => {
    const cut = e.data.indexOf("\n");
    const target = document.getElementById(e.data.slice(0, cut));
    if (target) {
      target.innerHTML = e.data.slice(cut + 1);
    }
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
