// The page at / of `gankit serve`: pick a model, a digit, n and a seed; the server draws
// them (GET /v1/generate, format=json) and the grid is drawn into a canvas. Every asset
// comes from this server: nothing is fetched from elsewhere.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const canvas = $("grid");
  const status = $("status");
  let models = [];
  let limits = {};
  let last = null;

  function say(text, isError) {
    status.textContent = text;
    status.className = isError ? "error" : "";
  }

  function current() {
    return models.find((m) => m.name === $("model").value);
  }

  function conditional(model) {
    return model.card.label_mode !== "none";
  }

  function showDigits() {
    const model = current();
    const box = $("digits");
    box.replaceChildren();
    $("draw").hidden = conditional(model);
    if (!conditional(model)) return;
    for (const digit of model.card.classes) {
      const button = document.createElement("button");
      button.type = "button";
      button.textContent = String(digit);
      button.dataset.digit = String(digit);
      button.setAttribute("aria-pressed", "false");
      button.addEventListener("click", () => draw(digit));
      box.appendChild(button);
    }
  }

  async function draw(digit) {
    for (const b of $("digits").querySelectorAll("button")) {
      b.setAttribute("aria-pressed", String(b.dataset.digit === String(digit)));
    }
    const query = new URLSearchParams({ model: $("model").value, n: $("n").value, seed: $("seed").value,
                                        format: "json" });
    if (digit !== null) query.set("digit", String(digit));
    canvas.dataset.state = "loading";
    say("drawing...");
    try {
      const response = await fetch("/v1/generate?" + query.toString());
      const payload = await response.json();
      if (!response.ok) throw new Error(payload.error || response.statusText);
      const flat = new Uint8Array(payload.shape[0] * 28 * 28);
      let at = 0;
      for (const image of payload.images) for (const row of image) for (const v of row) flat[at++] = v;
      GankitGrid.draw(canvas, flat, payload.shape[0], payload.columns);
      last = { digit, seed: payload.seed, n: payload.n, model: payload.model };
      canvas.dataset.request = JSON.stringify(last);
      canvas.dataset.state = "done";
      $("download").disabled = false;
      const what = digit === null ? "samples" : "digit " + digit;
      say(`${payload.shape[0]} images, ${what}, seed ${payload.seed}, model ${payload.model}`);
    } catch (err) {
      canvas.dataset.state = "error";
      say(String(err.message || err), true);
    }
  }

  $("model").addEventListener("change", showDigits);
  $("draw").addEventListener("click", () => draw(null));
  $("download").addEventListener("click", () => {
    if (!last) return;
    const what = last.digit === null ? "samples" : "digit" + last.digit;
    GankitGrid.download(canvas, `gankit-${last.model}-${what}-seed${last.seed}.png`, 4);
  });

  (async () => {
    try {
      const response = await fetch("/v1/models");
      const payload = await response.json();
      if (!response.ok) throw new Error(payload.error || response.statusText);
      models = payload.models;
      limits = payload.limits;
      for (const model of models) {
        const option = document.createElement("option");
        option.value = model.name;
        option.textContent = model.name;
        $("model").appendChild(option);
      }
      $("model").value = payload.default;
      $("n").max = String(limits.max_n);
      showDigits();
      say("pick a digit");
      document.body.dataset.ready = "true";
    } catch (err) {
      say("cannot list the models: " + String(err.message || err), true);
    }
  })();
})();
