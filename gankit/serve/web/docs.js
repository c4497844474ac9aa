// The offline API docs page of `gankit serve`: lists the operations of /openapi.json,
// with a form per operation that sends the request and shows the answer.
"use strict";

(() => {
  const ops = document.getElementById("ops");

  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    Object.assign(node, props || {});
    for (const child of children) node.append(child);
    return node;
  }

  function example(doc, schemaRef) {
    if (!schemaRef || !schemaRef.$ref) return "";
    const schema = doc.components.schemas[schemaRef.$ref.split("/").pop()];
    return schema && schema.example ? JSON.stringify(schema.example, null, 2) : "{}";
  }

  function operation(doc, path, method, op) {
    const params = op.parameters || [];
    const inputs = {};
    const form = el("div", { className: "params" });
    for (const p of params) {
      const input = el("input", { value: p.example !== undefined ? String(p.example) : "" });
      inputs[p.name] = [p, input];
      form.append(el("label", {}, `${p.name} (${p.in})`, input));
    }
    let body = null;
    if (op.requestBody) {
      const content = op.requestBody.content["application/json"];
      body = el("textarea", { value: example(doc, content && content.schema) });
    }
    const out = el("pre", { hidden: true });
    const picture = el("img", { hidden: true, alt: "response image" });
    const send = el("button", { type: "button", className: "action", textContent: "Send" });
    send.addEventListener("click", async () => {
      let url = path;
      const query = new URLSearchParams();
      for (const [name, [p, input]] of Object.entries(inputs)) {
        if (!input.value) continue;
        if (p.in === "path") url = url.replace(`{${name}}`, encodeURIComponent(input.value));
        else query.append(name, input.value);
      }
      if ([...query].length) url += "?" + query.toString();
      const headers = {};
      const key = document.getElementById("key").value;
      if (key) headers.Authorization = "Bearer " + key;
      const init = { method: method.toUpperCase(), headers };
      if (body) {
        headers["Content-Type"] = "application/json";
        init.body = body.value;
      }
      out.hidden = false;
      picture.hidden = true;
      try {
        const response = await fetch(url, init);
        const type = response.headers.get("content-type") || "";
        let text = `${response.status} ${response.statusText}  ${type}\n\n`;
        if (type.startsWith("image/")) {
          picture.src = URL.createObjectURL(await response.blob());
          picture.hidden = false;
        } else if (type.startsWith("application/json") || type.startsWith("text/")) {
          const raw = await response.text();
          text += raw.length > 4000 ? raw.slice(0, 4000) + "\n... (" + raw.length + " characters)" : raw;
        } else {
          text += `(${(await response.arrayBuffer()).byteLength} bytes of ${type})`;
        }
        out.textContent = text;
      } catch (err) {
        out.textContent = String(err);
      }
    });
    return el("div", { className: "op" },
      el("h3", {}, el("span", { className: "method", textContent: method.toUpperCase() }), path),
      el("p", { textContent: op.summary || "" }), form, body || "", send, out, picture);
  }

  fetch("/openapi.json").then((r) => r.json()).then((doc) => {
    document.title = `${doc.info.title} ${doc.info.version}: API`;
    for (const [path, methods] of Object.entries(doc.paths)) {
      for (const [method, op] of Object.entries(methods)) ops.append(operation(doc, path, method, op));
    }
    document.body.dataset.ready = "true";
  }).catch((err) => { ops.textContent = "cannot load /openapi.json: " + err; });
})();
