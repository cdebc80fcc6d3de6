/*! LINE CRM tracking script. No dependencies.
 * <script src="https://BOT/t/track.js" data-shop="SHOP_ID" async></script>
 * Product pages: put data-lcrm-product-id="ID" on any element (or on this tag),
 * or call lcrm("product_view", {product_id: "ID"}).
 * Other events: lcrm("add_to_cart" | "checkout_started" | "purchase",
 *   {product_id, variant_id, quantity, cart_token, order_id, value}) (value: yen, of what was added).
 * Link buttons: <a data-lcrm-link>LINEで友だち追加・連携</a> (data-lcrm-link="code" for a chat code).
 *   A click first asks the bot for a short-lived, single-use link token with this browser's ID and
 *   its secret (a second first-party cookie that is sent nowhere else), so nobody who merely knows a
 *   browser ID can link that browser to their own LINE account.
 * Options on the tag: data-auto-page-view="false" turns off the automatic page_view.
 */
(function (w, d) {
  "use strict";
  var script = d.currentScript;
  if (!script || (w.LineCrm && w.LineCrm.loaded)) return;
  var shop = script.getAttribute("data-shop");
  if (!shop) return;
  var base = (script.getAttribute("data-endpoint") || new URL(script.src).origin).replace(/\/$/, "");
  var endpoint = base + "/t/" + encodeURIComponent(shop) + "/events";
  var COOKIE = "_lcrm_bid";
  var SECRET_COOKIE = "_lcrm_bs";
  var REGISTERED = "_lcrm_reg";
  var tokenEndpoint = base + "/t/" + encodeURIComponent(shop) + "/link-token";
  var MAX_AGE = 400 * 24 * 3600; // browsers cap cookies at 400 days
  var ID_RE = /^[A-Za-z0-9_-]{16,64}$/;
  var UTM_KEYS = ["source", "medium", "campaign", "term", "content"];
  var PROPS = ["product_id", "variant_id", "cart_token", "order_id", "quantity", "value"];
  var TYPES = { page_view: 1, product_view: 1, add_to_cart: 1, checkout_started: 1, purchase: 1 };
  var pageViewSent = false;

  function randomId() {
    var bytes = new Uint8Array(16);
    (w.crypto || w.msCrypto).getRandomValues(bytes);
    var s = "";
    for (var i = 0; i < bytes.length; i++) s += String.fromCharCode(bytes[i]);
    return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function readCookie(name) {
    var parts = d.cookie ? d.cookie.split("; ") : [];
    for (var i = 0; i < parts.length; i++) {
      var eq = parts[i].indexOf("=");
      if (parts[i].slice(0, eq) === name) return decodeURIComponent(parts[i].slice(eq + 1));
    }
    return null;
  }

  function writeCookie(name, value) {
    // First-party, long-lived, refreshed on every visit; Lax so it survives arriving from LINE.
    d.cookie = name + "=" + value + "; Max-Age=" + MAX_AGE + "; Path=/; SameSite=Lax" +
      (location.protocol === "https:" ? "; Secure" : "");
  }

  function browserSecret() {
    var secret = readCookie(SECRET_COOKIE);
    if (!secret || !ID_RE.test(secret)) secret = randomId();
    writeCookie(SECRET_COOKIE, secret);
    return secret;
  }

  function browserId() {
    var id = readCookie(COOKIE);
    if (!id || !ID_RE.test(id)) {
      id = randomId();
      writeCookie(SECRET_COOKIE, randomId()); // a new browser ID gets a new secret
    }
    writeCookie(COOKIE, id);
    return id;
  }

  // A new pair when the bot says this ID is held by another secret (someone claimed it first).
  function renewBrowser() {
    writeCookie(COOKIE, randomId());
    writeCookie(SECRET_COOKIE, randomId());
  }

  function local() {
    try { return w.localStorage; } catch (e) { return null; }
  }

  // A link token for this browser (proof of its secret), or null; one retry with a fresh ID if claimed.
  function linkToken(done, retried) {
    if (!w.fetch) { done(null); return; }
    var body = JSON.stringify({ browser_id: browserId(), browser_secret: browserSecret() });
    w.fetch(tokenEndpoint, { method: "POST", body: body, mode: "cors", credentials: "omit",
      headers: { "Content-Type": "text/plain" } })
      .then(function (r) { return r.json().then(function (j) { return { status: r.status, json: j }; }); })
      .then(function (res) {
        if (res.status === 200 && res.json && res.json.link_token) {
          var s = local();
          if (s) s.setItem(REGISTERED, browserId());
          done(res.json.link_token);
        } else if (res.status === 403 && res.json && res.json.error && res.json.error.code === "browser_claimed" && !retried) {
          renewBrowser();
          linkToken(done, true);
        } else done(null);
      })
      .catch(function () { done(null); });
  }

  // Present the secret once for each browser ID, early, so it is this browser's before the ID travels.
  function register() {
    var s = local();
    if (s && s.getItem(REGISTERED) === browserId()) return;
    linkToken(function () {});
  }

  function httpUrl(value) {
    return typeof value === "string" && /^https?:\/\/\S+$/.test(value) ? value.slice(0, 2048) : null;
  }

  function store() {
    try { return w.sessionStorage; } catch (e) { return null; }
  }

  // UTM parameters of the landing page, kept for the session so later events carry them too.
  function utm() {
    var params = new URLSearchParams(location.search), found = {}, any = false;
    for (var i = 0; i < UTM_KEYS.length; i++) {
      var v = params.get("utm_" + UTM_KEYS[i]);
      if (v) { found[UTM_KEYS[i]] = v.slice(0, 200); any = true; }
    }
    var s = store();
    if (any) {
      if (s) s.setItem("_lcrm_utm", JSON.stringify(found));
      return found;
    }
    try { return s ? JSON.parse(s.getItem("_lcrm_utm") || "null") : null; } catch (e) { return null; }
  }

  function send(event) {
    var body = JSON.stringify(event);
    // A string body goes as text/plain: a "simple" CORS request, no preflight, survives page unload.
    if (navigator.sendBeacon) {
      try { if (navigator.sendBeacon(endpoint, body)) return; } catch (e) { /* fall through */ }
    }
    if (w.fetch) {
      w.fetch(endpoint, { method: "POST", body: body, keepalive: true, mode: "cors", credentials: "omit",
        headers: { "Content-Type": "text/plain" } }).catch(function () {});
    }
  }

  function track(type, props) {
    if (!TYPES[type]) return;
    var url = httpUrl(location.href);
    if (!url) return;
    var event = { event_id: randomId(), browser_id: browserId(), type: type === "product_view" ? "page_view" : type, url: url };
    props = props || {};
    for (var i = 0; i < PROPS.length; i++) {
      var v = props[PROPS[i]];
      if (v !== undefined && v !== null && v !== "") event[PROPS[i]] = PROPS[i] === "quantity" || PROPS[i] === "value" ? Number(v) : String(v);
    }
    var u = utm();
    if (u) event.utm = u;
    if (event.type === "page_view") {
      var ref = httpUrl(d.referrer);
      if (ref) event.referrer = ref;
      pageViewSent = true;
    }
    send(event);
  }

  function productOnPage() {
    var own = script.getAttribute("data-lcrm-product-id");
    if (own) return own;
    var el = d.querySelector("[data-lcrm-product-id]");
    return el ? el.getAttribute("data-lcrm-product-id") : null;
  }

  function linkUrl(kind, token) {
    return base + "/l/" + encodeURIComponent(shop) + (kind === "code" ? "/code" : "") + "?" +
      (token ? "lt=" + encodeURIComponent(token) + "&" : "") + "return=" + encodeURIComponent(location.href);
  }

  function openLink(kind, replace) {
    linkToken(function (token) {
      if (!token) return; // stay on the shop's page: without proof the link page would refuse
      if (replace) location.replace(linkUrl(kind, token));
      else location.href = linkUrl(kind, token);
    });
  }

  // Arrived from a link in LINE (our /l/ page bounced here): go back with this browser's link token.
  function bounceBack() {
    var params = new URLSearchParams(location.search), kind = params.get("lcrm_link");
    if (kind !== "login" && kind !== "code") return false;
    params.delete("lcrm_link");
    var rest = params.toString();
    history.replaceState(null, "", location.pathname + (rest ? "?" + rest : "") + location.hash);
    openLink(kind, true);
    return true;
  }

  function onReady() {
    if (bounceBack()) return;
    register();
    var links = d.querySelectorAll("a[data-lcrm-link]");
    for (var i = 0; i < links.length; i++) {
      links[i].href = linkUrl(links[i].getAttribute("data-lcrm-link"));
      links[i].addEventListener("click", function (e) {
        e.preventDefault();
        openLink(this.getAttribute("data-lcrm-link"), false);
      });
    }
    if (!pageViewSent && script.getAttribute("data-auto-page-view") !== "false") {
      var product = productOnPage();
      track("page_view", product ? { product_id: product } : {});
    }
  }

  var queued = (w.lcrm && w.lcrm.q) || [];
  w.lcrm = function (type, props) { track(type, props); };
  w.LineCrm = { loaded: true, track: track, browserId: browserId, linkToken: linkToken, openLink: openLink };
  for (var q = 0; q < queued.length; q++) track(queued[q][0], queued[q][1]);
  if (d.readyState === "loading") d.addEventListener("DOMContentLoaded", onReady);
  else onReady();
})(window, document);
