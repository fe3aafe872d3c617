/* c360 web chat: an embeddable widget that talks to c360's /v1/chat/ws socket.

   Embed with one tag (the stylesheet beside it is loaded by the script):

     <script src="https://c360.example.com/static/chat-widget.js" defer
             data-write-key="SOURCE_WRITE_KEY" data-user-id="OPTIONAL_USER_ID"
             data-user-hash="HEX_HMAC_SHA256_OF_THE_USER_ID"></script>

   The write key is public, so c360 believes data-user-id only with data-user-hash: the hex
   HMAC-SHA256 of the user id under c360's engage secret, computed by the site's server for
   its signed-in customer (c360.api.webchat.user_hash). Without it the chat is anonymous and
   the reason is written to the browser's console.

   Optional attributes: data-endpoint (the socket's wss:// address; default: the script's
   host), data-anonymous-id (default: analytics.js's id in localStorage, else one made here),
   data-lang ("vi", "en"), data-title, data-open="true" (start opened).

   The conversation's id is kept in localStorage, so a reload or a reconnect resumes it and
   the server sends its history. A message not yet seen stored by the server stays pending
   and is sent again (same client id, received once) after a reconnect. Reconnects back off
   from half a second to half a minute. No inline script or style: pages with a strict
   Content-Security-Policy can embed it. */
(function () {
  "use strict";

  var script = document.currentScript;
  if (!script) {
    return;
  }
  var MIN_DELAY_MS = 500;
  var MAX_DELAY_MS = 30000;
  var MAX_TEXT = 2000;
  var REFUSED = 1008; // the server refused the connection: retrying changes nothing
  var LABELS = {
    customer: "You",
    agent: "Assistant",
    operator: "Team member",
    system: "Notice",
  };

  var config = readConfig(script);
  if (!config.writeKey) {
    warn("data-write-key is missing on the chat widget's script tag; the chat stays off.");
    return;
  }
  var storageKey = "c360_chat:" + config.writeKey + ":" + (config.userId || "");
  var state = {
    socket: null,
    attempts: 0,
    timer: null,
    refused: false,
    shown: {}, // message ids already in the log
    pending: [], // {clientId, text, item}: sent or waiting, not yet seen stored
  };
  var ui = build(config);
  addStylesheet(script);
  document.body.appendChild(ui.root);
  if (config.open) {
    toggle(true);
  }
  connect();
  window.addEventListener("online", reconnectNow);
  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState === "visible") {
      reconnectNow();
    }
  });

  // -- configuration ------------------------------------------------------------------------

  function readConfig(tag) {
    var data = tag.dataset;
    return {
      writeKey: data.writeKey || "",
      userId: data.userId || "",
      userHash: data.userHash || "",
      anonymousId: data.anonymousId || anonymousId(),
      lang: data.lang || "",
      title: data.title || "Chat with us",
      open: data.open === "true",
      endpoint: data.endpoint || defaultEndpoint(tag.src),
    };
  }

  function defaultEndpoint(src) {
    var url = new URL(src, window.location.href);
    var scheme = url.protocol === "https:" ? "wss:" : "ws:";
    return scheme + "//" + url.host + "/v1/chat/ws";
  }

  function anonymousId() {
    // analytics.js keeps its id JSON-encoded under this key: the chat joins the same visitor
    var kept = read("ajs_anonymous_id");
    if (kept) {
      try {
        return String(JSON.parse(kept));
      } catch (ignored) {
        return kept;
      }
    }
    var own = read("c360_chat_anonymous_id");
    if (!own) {
      own = "anon-" + randomId();
      write("c360_chat_anonymous_id", own);
    }
    return own;
  }

  function addStylesheet(tag) {
    var link = document.createElement("link");
    link.rel = "stylesheet";
    link.href = new URL(tag.src, window.location.href).href.replace(/\.js(\?.*)?$/, ".css");
    document.head.appendChild(link);
  }

  // -- the socket ---------------------------------------------------------------------------

  function address() {
    var params = new URLSearchParams();
    params.set("writeKey", config.writeKey);
    if (config.userId) {
      params.set("userId", config.userId);
      if (config.userHash) {
        params.set("userHash", config.userHash);
      }
    }
    params.set("anonymousId", config.anonymousId);
    if (config.lang) {
      params.set("lang", config.lang);
    }
    var conversationId = read(storageKey);
    if (conversationId) {
      params.set("conversationId", conversationId);
    }
    return config.endpoint + "?" + params.toString();
  }

  function connect() {
    clearTimeout(state.timer);
    state.timer = null;
    if (state.refused || (state.socket && state.socket.readyState <= WebSocket.OPEN)) {
      return;
    }
    setStatus("Connecting…");
    var socket = new WebSocket(address());
    state.socket = socket;
    socket.addEventListener("message", function (event) {
      receive(event.data);
    });
    socket.addEventListener("close", function (event) {
      if (state.socket !== socket) {
        return;
      }
      state.socket = null;
      showTyping(false);
      if (event.code === REFUSED) {
        state.refused = true;
        setStatus("Chat is not available on this page.");
        return;
      }
      scheduleReconnect();
    });
  }

  function scheduleReconnect() {
    var ceiling = Math.min(MAX_DELAY_MS, MIN_DELAY_MS * Math.pow(2, state.attempts));
    var delay = ceiling / 2 + Math.random() * (ceiling / 2); // spread reconnecting widgets
    state.attempts += 1;
    setStatus("Offline. Reconnecting in " + Math.ceil(delay / 1000) + " s…");
    state.timer = setTimeout(connect, delay);
  }

  function reconnectNow() {
    if (!state.socket && !state.refused) {
      state.attempts = 0;
      connect();
    }
  }

  function receive(data) {
    var frame;
    try {
      frame = JSON.parse(data);
    } catch (ignored) {
      return;
    }
    if (frame.type === "history") {
      showHistory(frame);
    } else if (frame.type === "message") {
      showMessage(frame);
    } else if (frame.type === "typing") {
      showTyping(Boolean(frame.active));
    } else if (frame.type === "error") {
      showError(frame.message || "Something went wrong.");
    }
  }

  function send(entry) {
    var socket = state.socket;
    if (!socket || socket.readyState !== WebSocket.OPEN) {
      return false;
    }
    socket.send(JSON.stringify({ type: "message", text: entry.text, client_id: entry.clientId }));
    return true;
  }

  // -- what the server sends ----------------------------------------------------------------

  function showHistory(frame) {
    state.attempts = 0;
    if (frame.identity === "unverified" && frame.notice) {
      warn(frame.notice); // for the site's developer: why the customer is not recognised
    }
    write(storageKey, frame.conversation_id);
    setStatus("");
    showError("");
    ui.log.textContent = "";
    state.shown = {};
    var stored = {};
    (frame.messages || []).forEach(function (message) {
      if (message.client_id) {
        stored[message.client_id] = true;
      }
      appendMessage(message);
    });
    // what the server has is shown above; the rest is sent again, in order
    var waiting = state.pending.filter(function (entry) {
      return !stored[entry.clientId];
    });
    state.pending = [];
    waiting.forEach(function (entry) {
      entry.item = appendPending(entry.text);
      state.pending.push(entry);
      send(entry);
    });
  }

  function showMessage(message) {
    if (message.role !== "customer") {
      showTyping(false);
    }
    var entry = takePending(message.client_id);
    if (state.shown[message.id]) {
      if (entry) {
        entry.item.remove();
      }
      return;
    }
    if (entry) {
      entry.item.remove();
    }
    appendMessage(message);
  }

  function takePending(clientId) {
    for (var i = 0; clientId && i < state.pending.length; i += 1) {
      if (state.pending[i].clientId === clientId) {
        return state.pending.splice(i, 1)[0];
      }
    }
    return null;
  }

  function appendMessage(message) {
    state.shown[message.id] = true;
    var item = messageItem(message.role, message.text, message.at);
    ui.log.appendChild(item);
    item.scrollIntoView({ block: "end" });
  }

  function appendPending(text) {
    var item = messageItem("customer", text, null);
    item.classList.add("c360-chat__message--pending");
    var note = document.createElement("span");
    note.className = "c360-chat__note";
    note.textContent = " (sending…)";
    item.appendChild(note);
    ui.log.appendChild(item);
    item.scrollIntoView({ block: "end" });
    return item;
  }

  function messageItem(role, text, at) {
    var item = document.createElement("li");
    item.className = "c360-chat__message c360-chat__message--" + (LABELS[role] ? role : "agent");
    var who = document.createElement("span");
    who.className = "c360-chat__who";
    who.textContent = (LABELS[role] || LABELS.agent) + ": ";
    var body = document.createElement("span");
    body.className = "c360-chat__text";
    body.textContent = text; // text, never HTML: a message cannot inject markup
    item.appendChild(who);
    item.appendChild(body);
    if (at) {
      var time = document.createElement("time");
      time.className = "c360-chat__time";
      time.dateTime = at;
      time.textContent = new Date(at).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
      item.appendChild(time);
    }
    return item;
  }

  function showTyping(active) {
    ui.typing.hidden = !active;
  }

  function showError(text) {
    ui.error.textContent = text;
    ui.error.hidden = !text;
  }

  function setStatus(text) {
    ui.status.textContent = text;
    ui.status.hidden = !text;
  }

  // -- the visitor's side -------------------------------------------------------------------

  function submit(event) {
    event.preventDefault();
    var text = ui.input.value.trim();
    if (!text) {
      return;
    }
    if (text.length > MAX_TEXT) {
      showError("A message may be at most " + MAX_TEXT + " characters.");
      return;
    }
    showError("");
    var entry = { clientId: "m-" + randomId(), text: text, item: appendPending(text) };
    state.pending.push(entry);
    ui.input.value = "";
    if (!send(entry)) {
      setStatus("Offline: your message is sent when the chat reconnects.");
      reconnectNow();
    }
  }

  function toggle(open) {
    ui.panel.hidden = !open;
    ui.launcher.setAttribute("aria-expanded", open ? "true" : "false");
    ui.root.classList.toggle("c360-chat--open", open);
    if (open) {
      ui.input.focus();
    } else {
      ui.launcher.focus();
    }
  }

  // -- building the widget ------------------------------------------------------------------

  function build(settings) {
    var root = element("div", "c360-chat");
    var launcher = element("button", "c360-chat__launcher", settings.title);
    launcher.type = "button";
    launcher.setAttribute("aria-controls", "c360-chat-panel");
    launcher.setAttribute("aria-expanded", "false");

    var panel = element("section", "c360-chat__panel");
    panel.id = "c360-chat-panel";
    panel.hidden = true;
    panel.setAttribute("aria-labelledby", "c360-chat-title");

    var header = element("div", "c360-chat__header");
    var title = element("h2", "c360-chat__title", settings.title);
    title.id = "c360-chat-title";
    var close = element("button", "c360-chat__close", "×");
    close.type = "button";
    close.setAttribute("aria-label", "Close the chat");
    header.appendChild(title);
    header.appendChild(close);

    var status = element("p", "c360-chat__status");
    status.setAttribute("role", "status");
    var log = element("ol", "c360-chat__log");
    log.setAttribute("role", "log");
    log.setAttribute("aria-live", "polite");
    log.setAttribute("aria-label", "Messages");
    log.tabIndex = 0; // scrollable by keyboard
    var typing = element("p", "c360-chat__typing", "The assistant is typing…");
    typing.hidden = true;
    var error = element("p", "c360-chat__error");
    error.setAttribute("role", "alert");
    error.hidden = true;

    var form = element("form", "c360-chat__form");
    var label = element("label", "c360-chat__label", "Your message");
    label.htmlFor = "c360-chat-input";
    var input = element("textarea", "c360-chat__input");
    input.id = "c360-chat-input";
    input.name = "message";
    input.rows = 2;
    input.maxLength = MAX_TEXT;
    input.autocomplete = "off";
    if (settings.lang) {
      input.lang = settings.lang;
    }
    var sendButton = element("button", "c360-chat__send", "Send");
    sendButton.type = "submit";
    form.appendChild(label);
    form.appendChild(input);
    form.appendChild(sendButton);

    [header, status, log, typing, error, form].forEach(function (part) {
      panel.appendChild(part);
    });
    root.appendChild(panel);
    root.appendChild(launcher);

    launcher.addEventListener("click", function () {
      toggle(panel.hidden);
    });
    close.addEventListener("click", function () {
      toggle(false);
    });
    panel.addEventListener("keydown", function (event) {
      if (event.key === "Escape") {
        toggle(false);
      }
    });
    input.addEventListener("keydown", function (event) {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        submit(event); // Enter sends, Shift+Enter starts a new line
      }
    });
    form.addEventListener("submit", submit);
    return {
      root: root,
      launcher: launcher,
      panel: panel,
      status: status,
      log: log,
      typing: typing,
      error: error,
      input: input,
    };
  }

  function element(tag, className, text) {
    var made = document.createElement(tag);
    made.className = className;
    if (text) {
      made.textContent = text;
    }
    return made;
  }

  // -- small helpers ------------------------------------------------------------------------

  function randomId() {
    if (window.crypto && window.crypto.randomUUID) {
      return window.crypto.randomUUID();
    }
    return Date.now().toString(36) + "-" + Math.random().toString(36).slice(2, 12);
  }

  function read(key) {
    try {
      return window.localStorage.getItem(key);
    } catch (ignored) {
      return null; // storage blocked: the chat works, but does not resume after a reload
    }
  }

  function write(key, value) {
    try {
      window.localStorage.setItem(key, value);
    } catch (ignored) {
      // storage blocked or full: keep going without resuming
    }
  }

  function warn(text) {
    if (window.console) {
      window.console.warn("c360 chat: " + text);
    }
  }
})();
