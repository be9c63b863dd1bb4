/* keyturn console, version 1 (written for keyturn, no dependencies; served from the package,
   never a CDN). The Content-Security-Policy allows only this file: no inline script.
   - the reset dialog: open/close, generate a password from the product's rules (data-
     attributes on the form, crypto.getRandomValues), post the form with fetch and follow the
     task it queued until it is final;
   - a task page: poll its JSON until the task is final. */
"use strict";

function randomIndex(n) {
  const buf = new Uint32Array(1);
  const limit = Math.floor(0x100000000 / n) * n;
  do { crypto.getRandomValues(buf); } while (buf[0] >= limit);
  return buf[0] % n;
}

function generatePassword(form) {
  const classes = JSON.parse(form.dataset.classes);
  const forbidden = JSON.parse(form.dataset.forbidden);
  const min = Number(form.dataset.min), max = Number(form.dataset.max);
  const length = Math.max(min, Math.min(max, 20));
  for (;;) {
    const chars = classes.map((c) => c[randomIndex(c.length)]);  // one of every class
    const all = classes.join("");
    while (chars.length < length) chars.push(all[randomIndex(all.length)]);
    for (let i = chars.length - 1; i > 0; i--) {
      const j = randomIndex(i + 1);
      [chars[i], chars[j]] = [chars[j], chars[i]];
    }
    const password = chars.join("");
    if (!forbidden.some((p) => password.startsWith(p))) return password;
  }
}

function showTask(target, task) {
  target.textContent = "";
  const line = document.createElement("p");
  line.className = "badge badge-" + task.state;
  line.id = "progress-state";
  line.dataset.state = task.state;
  line.textContent = task.state + (task.verified_at ? " — verified " + task.verified_at : "");
  target.appendChild(line);
  for (const step of task.steps) {
    const row = document.createElement("div");
    row.className = "step";
    row.textContent = step.endpoint + ": " + step.phase + (step.note ? " (" + step.note + ")" : "");
    target.appendChild(row);
  }
  if (task.message && task.final) {
    const msg = document.createElement("p");
    msg.textContent = task.message;
    target.appendChild(msg);
  }
}

async function follow(url, target, onFinal) {
  for (;;) {
    const answer = await fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" });
    if (!answer.ok) { target.textContent = "Cannot read the task (" + answer.status + ")"; return; }
    const task = await answer.json();
    showTask(target, task);
    if (task.final) { if (onFinal) onFinal(task); return; }
    await new Promise((resolve) => setTimeout(resolve, 300));
  }
}

function setUpResetDialog() {
  const dialog = document.getElementById("reset-dialog");
  const opener = document.getElementById("open-reset");
  if (!dialog || !opener) return;
  const form = document.getElementById("reset-form");
  const progress = document.getElementById("reset-progress");
  const password = document.getElementById("reset-password");
  const shown = document.getElementById("generated");
  opener.addEventListener("click", () => dialog.showModal());
  document.getElementById("close-reset").addEventListener("click", () => dialog.close());
  document.getElementById("generate").addEventListener("click", () => {
    const value = generatePassword(form);
    password.value = value;
    shown.textContent = value;  // shown here only, in this browser: never sent back by keyturn
  });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const submit = document.getElementById("reset-submit");
    submit.disabled = true;
    progress.textContent = "queueing…";
    const body = new URLSearchParams(new FormData(form));
    const answer = await fetch(form.action, {
      method: "POST",
      body,
      headers: { Accept: "application/json" },
      credentials: "same-origin",
    });
    const data = await answer.json().catch(() => ({ error: "HTTP " + answer.status }));
    if (!answer.ok) {
      progress.textContent = data.error || "refused (" + answer.status + ")";
      progress.className = "error";
      submit.disabled = false;
      return;
    }
    password.value = "";
    const link = document.createElement("a");
    link.href = data.page;
    link.textContent = "task " + data.task;
    link.id = "progress-task";
    progress.textContent = "";
    const holder = document.createElement("div");
    progress.appendChild(holder);
    progress.appendChild(link);
    follow(data.poll, holder, () => { submit.disabled = false; });
  });
}

function setUpTaskPage() {
  const live = document.getElementById("task-live");
  if (!live || live.dataset.final === "1") return;
  follow(live.dataset.poll, live, (task) => {
    const state = document.getElementById("task-state");
    if (state) state.textContent = task.state;
    const verified = document.getElementById("task-verified");
    if (verified) verified.textContent = task.verified_at || "";
  });
}

document.addEventListener("DOMContentLoaded", () => {
  setUpResetDialog();
  setUpTaskPage();
});
