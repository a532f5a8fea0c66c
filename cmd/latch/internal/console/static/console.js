// The console's own script: keeps the live tail bounded. Everything else is plain links and
// forms (enhanced by htmx's hx-boost); the console works without this file.
(function () {
  "use strict";
  function trim(tbody) {
    var max = parseInt(tbody.getAttribute("data-max"), 10) || 50;
    var placeholder = tbody.querySelector("tr.placeholder");
    if (placeholder && tbody.rows.length > 1) {
      placeholder.remove();
    }
    while (tbody.rows.length > max) {
      tbody.deleteRow(tbody.rows.length - 1);
    }
  }
  document.addEventListener("htmx:sseMessage", function (e) {
    var tbody = document.getElementById("tail");
    if (!tbody) {
      return;
    }
    if (tbody.rows.length > 0) {
      tbody.rows[0].classList.add("fresh");
    }
    trim(tbody);
  });
})();
