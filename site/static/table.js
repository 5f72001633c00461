// Sortable tables and toggles. Cells carry their sort key in data-value; numbers sort as
// numbers, empty values last. A header marked data-lower-better sorts ascending first.
(function () {
  function key(cell, numeric) {
    var v = cell ? cell.getAttribute("data-value") : "";
    if (v === null || v === "" || v === "nan" || v === "None") return null;
    return numeric ? parseFloat(v) : v.toLowerCase();
  }
  function sortBy(table, index, th) {
    var numeric = th.getAttribute("data-type") !== "text";
    var lowerBetter = th.hasAttribute("data-lower-better");
    var current = th.getAttribute("aria-sort");
    var ascending = current ? current === "descending" : (numeric ? lowerBetter : true);
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = key(a.cells[index], numeric), y = key(b.cells[index], numeric);
      if (x === null && y === null) return 0;
      if (x === null) return 1;
      if (y === null) return -1;
      if (numeric && isNaN(x)) return 1;
      if (numeric && isNaN(y)) return -1;
      return (x < y ? -1 : x > y ? 1 : 0) * (ascending ? 1 : -1);
    });
    rows.forEach(function (row) { body.appendChild(row); });
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (h) { h.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
  }
  document.querySelectorAll("table.sortable").forEach(function (table) {
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, index) {
      th.tabIndex = 0;  // reachable by keyboard: Enter or Space sorts
      th.addEventListener("click", function () { sortBy(table, index, th); });
      th.addEventListener("keydown", function (event) {
        if (event.key === "Enter" || event.key === " ") { event.preventDefault(); sortBy(table, index, th); }
      });
    });
  });
  // Filters: a row shows when it matches every chosen value and the search text, and (for
  // the extra runs beyond each method's best) when "all runs" is ticked.
  document.querySelectorAll("form[data-filters]").forEach(function (form) {
    var table = document.getElementById(form.getAttribute("data-filters"));
    var count = form.querySelector("[data-filter-count]");
    function apply() {
      var all = form.querySelector("input[data-toggle=all-runs]");
      var text = form.querySelector("input[data-filter=method]").value.trim().toLowerCase();
      var chosen = Array.prototype.filter.call(form.querySelectorAll("select[data-filter]"), function (s) { return s.value; });
      var shown = 0, total = 0;
      Array.prototype.forEach.call(table.tBodies[0].rows, function (row) {
        var extra = row.classList.contains("extra-run");
        var match = (row.getAttribute("data-method") || "").toLowerCase().indexOf(text) !== -1 &&
          chosen.every(function (s) { return row.getAttribute("data-" + s.getAttribute("data-filter")) === s.value; });
        row.hidden = !(match && (!extra || (all && all.checked)));
        if (!extra) { total += 1; if (match) shown += 1; }
      });
      if (count) count.textContent = shown === total ? "" : shown + " of " + total + " methods shown";
    }
    form.addEventListener("input", apply);
    form.addEventListener("change", apply);
  });
})();
