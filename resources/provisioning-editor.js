/*
 * What every dialog of node-red-contrib-provisioning shares in the editor: the checks that
 * mark a bad value before deploy, and the look of a dialog's section headings.
 *
 * Node-RED serves a module's resources/ folder at resources/<module>/ and each node's .html
 * loads this file with a <script src>; the editor appends node definitions with jQuery,
 * which runs such a script before the next one (Node-RED docs, "Loading extra resources in
 * the editor"). Loaded once per node file, it defines itself once.
 * nodes/shared/config.ts makes the same checks at run time, for a flow imported with a bad
 * value; test/unit/dialog-checks.test.ts holds both to the same cases.
 */
(function () {
  "use strict";
  if (window.provisioningChecks) return;

  // Longest wait: setTimeout's limit, 2^31 - 1 ms (Node.js docs, timers: setTimeout).
  var MAX_SECONDS = 2147483;
  // A count or rate past this is a typing slip, not a setting.
  var MAX_COUNT = 1000000000;

  // Scheme, host (a name, IPv4 or [IPv6]), an optional port of up to 5 digits, nothing else.
  // A host or a port may be a whole `${NAME}` (resolved at deploy), as the examples keep ports.
  var MQTT_URL =
    /^(mqtts?|ssl|tcp):\/\/([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\]|\$\{[A-Za-z_]\w*\})(:(\d{1,5}|\$\{[A-Za-z_]\w*\}))?\/?$/;

  var REF = "\\$\\{[A-Za-z_]\\w*\\}";
  var HOST_PORT = new RegExp("^([A-Za-z0-9.-]+|\\[[0-9A-Fa-f:.]+\\]|" + REF + ")(:(\\d{1,5}|" + REF + "))?$");

  function text(v) {
    return v === undefined || v === null ? "" : String(v).trim();
  }
  /** A reference to an environment variable (`${NAME}`), which Node-RED resolves at deploy. */
  function envRef(v) {
    return /^\$\{[A-Za-z_][A-Za-z0-9_]*\}$/.test(text(v));
  }
  function decimal(s) {
    return /^\d+(\.\d+)?$/.test(s);
  }
  function seconds(v) {
    var s = text(v);
    return decimal(s) && Number(s) > 0 && Number(s) <= MAX_SECONDS;
  }
  function port(v) {
    var s = text(v);
    return envRef(s) || (/^\d{1,5}$/.test(s) && Number(s) >= 1 && Number(s) <= 65535);
  }
  /** An optional whole number of at least `min`; empty keeps the node's default. */
  function count(min) {
    return function (v) {
      var s = text(v);
      return s === "" || (/^\d+$/.test(s) && Number(s) >= min && Number(s) <= MAX_COUNT);
    };
  }

  window.provisioningChecks = {
    port: port,
    optionalPort: function (v) {
      return text(v) === "" || port(v);
    },
    seconds: seconds,
    secondsOrZero: function (v) {
      return /^0+(\.0+)?$/.test(text(v)) || seconds(v);
    },
    jitter: function (v) {
      var s = text(v);
      return decimal(s) && Number(s) <= 1;
    },
    intervals: function (v) {
      var parts = text(v)
        .split(/[\s,;]+/)
        .filter(function (p) {
          return p !== "";
        });
      return parts.length >= 1 && parts.length <= 8 && parts.every(seconds);
    },
    attempts: function (v) {
      var s = text(v);
      return s === "-1" || (/^\d+$/.test(s) && Number(s) >= 1 && Number(s) <= Number.MAX_SAFE_INTEGER);
    },
    count: count(1),
    countOrZero: count(0),
    /** Requests per second, 0 for none; empty keeps the default. */
    rate: function (v) {
      var s = text(v);
      return s === "" || (decimal(s) && Number(s) <= MAX_COUNT);
    },
    /** An MQTT broker URL (mqtts, mqtt, ssl or tcp, a host, maybe a port) or a `${NAME}`; empty is left to the field's own rule. */
    mqttUrl: function (v) {
      var s = text(v);
      return s === "" || envRef(s) || MQTT_URL.test(s);
    },
    /**
     * A service's host with an optional port (`name`, `10.0.0.1:8883`, `[::1]:443`), where host
     * and port may be `${NAME}`; empty is left to the field's own rule.
     */
    hostPort: function (v) {
      var s = text(v);
      return s === "" || HOST_PORT.test(s);
    },
    /** An Azure DPS id scope (`0ne00000A0A`: letters and digits) or a `${NAME}`. */
    idScope: function (v) {
      var s = text(v);
      return envRef(s) || /^[A-Za-z0-9]{1,64}$/.test(s);
    },
    /** An Azure DPS registration id (letters, digits, `-._:`, at most 128), a `${NAME}`, or empty. */
    registrationId: function (v) {
      var s = text(v);
      return s === "" || envRef(s) || /^[A-Za-z0-9\-._:]{0,127}[A-Za-z0-9-]$/.test(s);
    },
    /** JSON text, or empty. */
    json: function (v) {
      var s = text(v);
      if (s === "") return true;
      try {
        JSON.parse(s);
        return true;
      } catch {
        return false;
      }
    },
    /** A valid tls-config node is chosen, unless the node uses the demo PKI (its `demoPki`). */
    tlsOrDemoPki: function (v) {
      if (this.demoPki === true) return true;
      var c = v ? RED.nodes.node(v) : null;
      return !!c && c.type === "tls-config" && c.valid !== false;
    },
    /** Minutes a lock lasts: more than 0, at most the longest timer; empty keeps the default. */
    minutes: function (v) {
      var s = text(v);
      return s === "" || (decimal(s) && Number(s) > 0 && Number(s) * 60 <= MAX_SECONDS);
    },
  };

  // Section headings: the dialog's rows grouped by what a person decides there.
  if (typeof document !== "undefined" && document.head) {
    var style = document.createElement("style");
    style.textContent =
      ".provisioning-section{margin:18px 0 8px;padding-bottom:3px;font-weight:bold;" +
      "border-bottom:1px solid var(--red-ui-secondary-border-color,#ddd);" +
      "color:var(--red-ui-primary-text-color,#555)}" +
      ".provisioning-section:first-child{margin-top:4px}";
    document.head.appendChild(style);
  }
})();
