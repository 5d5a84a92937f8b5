// Small progressive enhancements shared by every page. Every page works without them.
(function () {
  "use strict";

  // --- Dark mode toggle --------------------------------------------------------------------------
  var toggle = document.getElementById("theme-toggle");
  if (toggle) {
    toggle.addEventListener("click", function () {
      var dark = !document.documentElement.classList.contains("dark");
      document.documentElement.classList.toggle("dark", dark);
      localStorage.setItem("theme", dark ? "dark" : "light");
    });
  }

  // Close the phone menu when tapping elsewhere.
  document.addEventListener("click", function (event) {
    document.querySelectorAll("details[data-menu][open]").forEach(function (menu) {
      if (!menu.contains(event.target)) menu.open = false;
    });
  });

  // --- Copy to clipboard ---------------------------------------------------------------------------
  function copyText(text) {
    if (navigator.clipboard && window.isSecureContext) return navigator.clipboard.writeText(text);
    // Plain-HTTP fallback (no async clipboard API outside secure contexts).
    return new Promise(function (resolve, reject) {
      var area = document.createElement("textarea");
      area.value = text;
      area.setAttribute("readonly", "");
      area.style.position = "fixed";
      area.style.opacity = "0";
      document.body.appendChild(area);
      area.select();
      var ok = false;
      try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
      document.body.removeChild(area);
      if (ok) { resolve(); } else { reject(new Error("copy failed")); }
    });
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest("button.copy[data-copy]");
    if (!button) return;
    copyText(button.dataset.copy).then(function () {
      if (!button.dataset.label) button.dataset.label = button.textContent;
      button.textContent = "✓ " + (button.dataset.copiedLabel || "Copied");
      clearTimeout(button._copyTimer);
      button._copyTimer = setTimeout(function () { button.textContent = button.dataset.label; }, 1500);
    });
  });

  // --- Live search (combobox) ------------------------------------------------------------------------
  var searchForm = document.getElementById("site-search");
  var searchInput = document.getElementById("site-search-input");
  var searchList = document.getElementById("site-search-results");
  if (searchForm && searchInput && searchList) {
    var minChars = parseInt(searchForm.dataset.minChars || "2", 10);
    var timer = null;
    var controller = null;
    var active = -1;
    var lastQuery = "";

    var options = function () { return searchList.querySelectorAll("[role=option]"); };

    var setOpen = function (open) {
      searchList.hidden = !open;
      searchInput.setAttribute("aria-expanded", open ? "true" : "false");
      if (!open) { active = -1; searchInput.removeAttribute("aria-activedescendant"); }
    };

    var highlight = function (index) {
      var items = options();
      if (!items.length) return;
      active = (index + items.length) % items.length;
      items.forEach(function (item, i) {
        var on = i === active;
        item.setAttribute("aria-selected", on ? "true" : "false");
        item.classList.toggle("bg-indigo-50", on);
        item.classList.toggle("dark:bg-indigo-950", on);
      });
      searchInput.setAttribute("aria-activedescendant", items[active].id);
      items[active].scrollIntoView({block: "nearest"});
    };

    var option = function (id, href, title, detail) {
      var link = document.createElement("a");
      link.id = id;
      link.href = href;
      link.setAttribute("role", "option");
      link.setAttribute("aria-selected", "false");
      link.tabIndex = -1;
      link.className = "flex items-center justify-between gap-3 px-3 py-2 text-sm hover:bg-slate-100 dark:hover:bg-slate-800";
      var name = document.createElement("span");
      name.className = "truncate font-medium";
      name.textContent = title;
      link.appendChild(name);
      if (detail) {
        var extra = document.createElement("span");
        extra.className = "shrink-0 text-xs text-slate-500 dark:text-slate-400";
        extra.textContent = detail;
        link.appendChild(extra);
      }
      return link;
    };

    var render = function (query, results) {
      searchList.textContent = "";
      results.forEach(function (result, i) {
        searchList.appendChild(option("search-option-" + i, result.url, result.name, result.category));
      });
      if (!results.length) {
        var empty = document.createElement("p");
        empty.className = "px-3 py-2 text-sm text-slate-500 dark:text-slate-400";
        empty.textContent = searchForm.dataset.emptyText || "No products found";
        searchList.appendChild(empty);
      }
      var all = option("search-option-all", searchForm.action + "?q=" + encodeURIComponent(query),
        (searchForm.dataset.allText || "See all results") + " →", "");
      all.classList.add("border-t", "border-slate-200", "text-indigo-700", "dark:border-slate-700", "dark:text-indigo-300");
      searchList.appendChild(all);
      active = -1;
      setOpen(true);
    };

    var fetchResults = function () {
      var query = searchInput.value.trim();
      if (query.length < minChars) { lastQuery = ""; setOpen(false); return; }
      if (query === lastQuery && searchList.children.length) { setOpen(true); return; }
      if (controller) controller.abort();
      controller = window.AbortController ? new AbortController() : null;
      fetch(searchForm.action + "?q=" + encodeURIComponent(query), {
        headers: {"Accept": "application/json"},
        signal: controller ? controller.signal : undefined,
      })
        .then(function (response) { return response.json(); })
        .then(function (data) {
          if (searchInput.value.trim() !== query) return; // a newer query is on its way
          lastQuery = query;
          render(query, data.results || []);
        })
        .catch(function () { /* aborted or offline: the form still submits to the search page */ });
    };

    searchInput.addEventListener("input", function () {
      clearTimeout(timer);
      timer = setTimeout(fetchResults, 200);
    });
    searchInput.addEventListener("focus", function () {
      if (searchInput.value.trim().length >= minChars && searchList.children.length) setOpen(true);
    });
    searchInput.addEventListener("keydown", function (event) {
      var open = !searchList.hidden;
      if (event.key === "ArrowDown" || event.key === "ArrowUp") {
        if (!open) { fetchResults(); return; }
        event.preventDefault();
        highlight(active + (event.key === "ArrowDown" ? 1 : -1));
      } else if (event.key === "Enter" && open && active >= 0) {
        event.preventDefault();
        window.location.href = options()[active].href;
      } else if (event.key === "Escape" && open) {
        event.preventDefault();
        setOpen(false);
      }
    });
    document.addEventListener("click", function (event) {
      if (!searchForm.contains(event.target)) setOpen(false);
    });
  }

  // --- Product page: variant picker, quantity stepper, live total -------------------------------------
  var buyForm = document.getElementById("buy-form");
  if (buyForm) {
    var quantity = document.getElementById("id_quantity");
    var expected = document.getElementById("expected_price");
    var unitOut = document.getElementById("buy-unit");
    var qtyOut = document.getElementById("buy-qty");
    var totalOut = document.getElementById("buy-total");
    var tierNote = document.getElementById("buy-tier-note");
    var steppers = buyForm.querySelectorAll("[data-step]");
    var minQty = parseInt(quantity.min, 10) || 1;

    var cents = function (price) { return Math.round(parseFloat(price) * 100); };
    var money = function (amount) { return (amount / 100).toFixed(2); };
    var picked = function () { return buyForm.querySelector("input[name=variant]:checked"); };

    // The unit price for a quantity: the quoted price of the highest wholesale break reached.
    var unitPrice = function (variant, qty) {
      var price = variant.dataset.price;
      JSON.parse(variant.dataset.steps || "[]").forEach(function (step) {
        if (qty >= step[0]) price = step[1];
      });
      return price;
    };

    var sync = function () {
      var variant = picked();
      var maxQty = variant ? Math.max(parseInt(variant.dataset.max, 10) || minQty, minQty) : minQty;
      quantity.max = String(maxQty);
      var qty = parseInt(quantity.value, 10);
      steppers.forEach(function (button) {
        var step = parseInt(button.dataset.step, 10);
        button.disabled = !variant || isNaN(qty) || (step < 0 ? qty <= minQty : qty >= maxQty);
      });
      if (!variant || isNaN(qty)) { expected.value = ""; return; }
      var unit = unitPrice(variant, qty);
      expected.value = unit;
      if (unitOut) unitOut.textContent = unit;
      if (qtyOut) qtyOut.textContent = String(qty);
      if (totalOut) totalOut.textContent = money(cents(unit) * qty);
      if (tierNote) tierNote.hidden = cents(unit) >= cents(variant.dataset.price);
    };

    var clamp = function () {
      var qty = parseInt(quantity.value, 10);
      var maxQty = parseInt(quantity.max, 10) || minQty;
      if (isNaN(qty) || qty < minQty) qty = minQty;
      if (qty > maxQty) qty = maxQty;
      quantity.value = String(qty);
    };

    steppers.forEach(function (button) {
      button.hidden = false;
      button.addEventListener("click", function () {
        var qty = parseInt(quantity.value, 10) || minQty;
        quantity.value = String(qty + parseInt(button.dataset.step, 10));
        clamp();
        sync();
      });
    });
    buyForm.addEventListener("change", function (event) {
      if (event.target === quantity || event.target.name === "variant") clamp();
      sync();
    });
    quantity.addEventListener("input", sync);
    sync();
  }

  // --- Order page: follow the status until it settles ---------------------------------------------------
  var order = document.getElementById("order");
  if (order && !(order.dataset.final === "1" && order.dataset.status !== "pending_payment")) {
    var poll = function () {
      fetch(order.dataset.statusUrl, {headers: {"Accept": "application/json"}})
        .then(function (response) { return response.json(); })
        .then(function (state) {
          if (state.status !== order.dataset.status) { window.location.reload(); }
          else if (!state.final) { setTimeout(poll, 2000); }
        })
        .catch(function () { setTimeout(poll, 5000); });
    };
    setTimeout(poll, 2000);
  }
})();
