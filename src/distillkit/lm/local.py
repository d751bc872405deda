"""Local transformers models: log-likelihood with a shared-context KV cache, generation, chat templates."""

from __future__ import annotations

import copy
import gc
import hashlib
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from distillkit.devices import autocast, bf16_supported, check_precision, resolve_device
from distillkit.errors import UserError
from distillkit.lm.config import GenerationConfig, apply_stop
from distillkit.lm.protocol import LoglikelihoodResult
from distillkit.runs import file_digest
from distillkit.seeding import derive_seed


class LocalLM:
    """A causal LM with its tokenizer.

    - `loglikelihood(requests)`: log p(continuation | context) for (context, continuation) pairs.
      Requests that share a context (e.g. the options of one question) are scored with one forward
      pass over the context; its KV cache is reused for all continuations in a single batch.
    - `generate(prompts, config)`: greedy or sampled decoding, batched with left padding, longest prompts first.
    - `chat(conversations, config)`: the same through the tokenizer's chat template.

    `precision="bf16"` runs the forward passes under bfloat16 autocast (log-softmax stays float32).
    `batch_size="auto"` finds the largest batch that fits on the first call (see `fit_batch_size`) and keeps it.
    """

    def __init__(
        self,
        model,
        tokenizer,
        name: str = "local",
        max_length: int = 2048,
        batch_size: int | str = 8,
        precision: str = "fp32",
        adapter: dict | None = None,
    ):
        self.model = model.eval()
        self.precision = check_precision(precision, self.device)
        self.tokenizer = tokenizer
        self.name = name
        self.max_length = max_length
        self.batch_size = check_batch_size(batch_size)
        self.auto_batch = batch_size == "auto"
        self.adapter = adapter  # {"path", "sha256", "merged"} of a PEFT adapter on the weights, if any
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.usage = {"prompt_tokens": 0, "completion_tokens": 0, "forward_tokens": 0}

    @property
    def device(self) -> torch.device:
        """Where inputs go: the device of the input embeddings (with `device_map="auto"`, the first GPU used)."""
        return input_device(self.model)

    def describe(self) -> dict:
        """What to record with results: name, class, parameter count, dtype, device, window."""
        placement = getattr(self.model, "hf_device_map", None)  # device_map="auto": module -> device
        return {
            "backend": "local",
            "name": self.name,
            "architecture": type(self.model).__name__,
            "parameters": sum(p.numel() for p in self.model.parameters()),
            "dtype": str(next(self.model.parameters()).dtype),
            "device": str(self.device),
            "device_map": placement_summary(placement) if placement else None,
            "precision": self.precision,
            "max_length": self.max_length,
            "batch_size": self.batch_size,
            "batch_size_auto": self.auto_batch,
            "adapter": self.adapter,
            "revision": getattr(self.model.config, "_commit_hash", None),  # hub snapshot, when loaded from the hub
            "source": getattr(self.model.config, "_name_or_path", None),
            "chat_template_sha256": _text_digest(getattr(self.tokenizer, "chat_template", None)),
        }

    # ---------------------------------------------------------------- tokenisation
    def encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        """lm-eval style: trailing whitespace of the context moves to the continuation; the continuation
        tokens are those of enc(context + continuation) beyond len(enc(context))."""
        n_spaces = len(context) - len(context.rstrip())
        if n_spaces:
            continuation = context[-n_spaces:] + continuation
            context = context[:-n_spaces]
        whole = self.tokenizer(context + continuation).input_ids
        ctx = self.tokenizer(context).input_ids if context else []
        cont = whole[len(ctx) :]
        if not ctx:
            prefix = self.tokenizer.bos_token_id
            ctx = [prefix if prefix is not None else self.tokenizer.eos_token_id]
        if not cont:
            raise UserError(f"empty continuation after tokenisation for {continuation[:40]!r}; give non-empty options")
        return ctx, cont

    # ---------------------------------------------------------------- likelihood
    @torch.inference_mode()
    def loglikelihood(self, requests: Sequence[tuple[str, str]]) -> list[float]:
        """Summed log-probability of each continuation given its context."""
        return [r.logprob for r in self.loglikelihood_detailed(requests)]

    @torch.inference_mode()
    def loglikelihood_detailed(self, requests: Sequence[tuple[str, str]]) -> list[LoglikelihoodResult]:
        """Like `loglikelihood`, with token/char counts, greedy flags and truncation flags.

        Requests are grouped by context. `batch_size` contexts go through one forward pass (left padded);
        then all their continuations go through a second pass that attends to the cached contexts.
        """
        encoded = [self.encode_pair(c, x) for c, x in requests]
        if self.batch_size == "auto" and encoded:
            self._fit_loglikelihood(encoded)
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, (ctx, _) in enumerate(encoded):
            groups.setdefault(tuple(ctx), []).append(i)
        items = list(groups.items())
        results: list[LoglikelihoodResult | None] = [None] * len(requests)
        for start in range(0, len(items), self.batch_size):
            chunk = items[start : start + self.batch_size]
            scored = self._score_groups([(list(ctx), [encoded[i][1] for i in idxs]) for ctx, idxs in chunk])
            for (_, idxs), group_scores in zip(chunk, scored, strict=True):
                for i, (lp, greedy, trunc) in zip(idxs, group_scores, strict=True):
                    ctx_text = requests[i][0]
                    n_chars = len(requests[i][1]) + len(ctx_text) - len(ctx_text.rstrip())
                    results[i] = LoglikelihoodResult(lp, len(encoded[i][1]), n_chars, greedy, trunc)
        return results  # type: ignore[return-value]

    def _score_groups(self, groups: list[tuple[list[int], list[list[int]]]]) -> list[list[tuple[float, bool, bool]]]:
        """Score the continuations of several contexts: one pass over the contexts, one over all continuations."""
        dev = self.device
        pad = self.tokenizer.pad_token_id
        ctxs, truncs = [], []
        for ctx, conts in groups:
            longest = max(len(c) for c in conts)
            if longest >= self.max_length:
                raise UserError(
                    f"an option is {longest} tokens long, beyond the {self.max_length}-token window; "
                    "shorten it or raise max_length"
                )
            room = self.max_length - longest
            truncs.append(len(ctx) > room)
            ctxs.append(ctx[-room:])
        n = len(ctxs)
        lc = max(len(c) for c in ctxs)
        ids = torch.full((n, lc), pad, dtype=torch.long)
        mask = torch.zeros((n, lc), dtype=torch.long)
        for r, c in enumerate(ctxs):  # left padding: every context ends at the last column
            ids[r, lc - len(c) :] = torch.tensor(c)
            mask[r, lc - len(c) :] = 1
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        with autocast(dev, self.precision):
            out = self.model(
                ids.to(dev), attention_mask=mask.to(dev), position_ids=pos.to(dev), use_cache=True, logits_to_keep=1
            )
        first = torch.log_softmax(out.logits[:, -1].float(), dim=-1)  # [n, vocab], on the device of the head
        head = first.device  # with device_map="auto", the last GPU's (inputs go to the first's)
        rows = [(g, c) for g, (_, conts) in enumerate(groups) for c in conts]
        self.usage["forward_tokens"] += n * lc
        # every row's score on the device at once, read back in one transfer (not one sync per option)
        row_group = torch.tensor([g for g, _ in rows], device=head)
        first_tok = torch.tensor([c[0] for _, c in rows], device=head)
        head_lp = first[row_group, first_tok]
        greedy = first.argmax(-1)[row_group] == first_tok
        rest_lp, rest_greedy = self._continuation_scores(out.past_key_values, mask, ctxs, rows, head)
        greedy &= rest_greedy
        res: list[list[tuple[float, bool, bool]]] = [[] for _ in groups]
        for (g, _), h, rest, ok in zip(rows, head_lp.tolist(), rest_lp.tolist(), greedy.tolist(), strict=True):
            res[g].append((h + rest, bool(ok), truncs[g]))
        return res

    def _continuation_scores(
        self, cache, mask: torch.Tensor, ctxs: list[list[int]], rows: list[tuple[int, list[int]]], head: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """For each (context index, continuation) row: the summed log-probability of the continuation's tokens
        after its first, and whether each was the greedy pick. Rows go through the model sorted by length, in
        passes of as many rows as there are contexts (so a pass holds no more than the context pass did), each
        padded only to its own longest row and attending to a copy of its contexts' cached keys and values (the
        last pass takes the cache itself)."""
        rest = torch.zeros(len(rows), device=head)
        greedy = torch.ones(len(rows), dtype=torch.bool, device=head)
        order = sorted((r for r, (_, c) in enumerate(rows) if len(c) > 1), key=lambda r: len(rows[r][1]))
        step = len(ctxs)
        parts = [order[k : k + step] for k in range(0, len(order), step)]
        for k, part in enumerate(parts):
            width = max(len(rows[r][1]) for r in part) - 1
            gidx = torch.tensor([rows[r][0] for r in part])
            part_cache = cache if k == len(parts) - 1 else copy.deepcopy(cache)
            part_cache.batch_select_indices(gidx)  # CPU indices serve layers on any device
            inp = torch.full((len(part), width), self.tokenizer.pad_token_id, dtype=torch.long)
            tgt = torch.full((len(part), width), -1, dtype=torch.long)
            for i, r in enumerate(part):
                c = rows[r][1]
                inp[i, : len(c) - 1] = torch.tensor(c[:-1], dtype=torch.long)
                tgt[i, : len(c) - 1] = torch.tensor(c[1:], dtype=torch.long)
            part_mask = torch.cat([mask[gidx], torch.ones((len(part), width), dtype=torch.long)], dim=-1)
            pos = torch.tensor([len(ctxs[rows[r][0]]) for r in part])[:, None] + torch.arange(width)[None]
            self.usage["forward_tokens"] += len(part) * width
            dev = self.device
            with autocast(dev, self.precision):
                logits = self.model(
                    inp.to(dev),
                    attention_mask=part_mask.to(dev),
                    position_ids=pos.to(dev),
                    past_key_values=part_cache,
                    use_cache=True,
                ).logits.float()
            tgt = tgt.to(head)
            scored = tgt >= 0
            picked = logits.gather(-1, tgt.clamp(min=0)[..., None])[..., 0] - logits.logsumexp(-1)
            at = torch.tensor(part, device=head)
            rest[at] = torch.where(scored, picked, torch.zeros_like(picked)).sum(-1)
            greedy[at] = ((logits.argmax(-1) == tgt) | ~scored).all(-1)
        return rest, greedy

    @torch.inference_mode()
    def loglikelihood_naive(self, requests: Sequence[tuple[str, str]]) -> list[LoglikelihoodResult]:
        """Reference: one full forward pass per request, no cache, no batching (the official method)."""
        out = []
        for context, continuation in requests:
            ctx, cont = self.encode_pair(context, continuation)
            ids = (ctx + cont)[-(self.max_length + 1) :][:-1]
            with autocast(self.device, self.precision):
                logits = self.model(torch.tensor([ids], device=self.device)).logits[0, -len(cont) :].float()
            logp = torch.log_softmax(logits, dim=-1)
            tgt = torch.tensor(cont, device=logits.device)
            lp = logp.gather(-1, tgt[:, None]).sum().item()
            greedy = bool((logp.argmax(-1) == tgt).all())
            n_chars = len(continuation) + len(context) - len(context.rstrip())
            out.append(LoglikelihoodResult(lp, len(cont), n_chars, greedy, len(ctx) + len(cont) > self.max_length + 1))
        return out

    # ---------------------------------------------------------------- batch size
    def fit_batch_size(self, requests: Sequence[tuple[str, str]]) -> int:
        """`batch_size="auto"` for `loglikelihood`: the largest batch of contexts that fits the heaviest question
        of `requests` (its longest context cut to the window, the most options, the longest option); then kept."""
        return self._fit_loglikelihood([self.encode_pair(c, x) for c, x in requests])

    def _fit_loglikelihood(self, encoded: list[tuple[list[int], list[int]]]) -> int:
        options: dict[tuple[int, ...], int] = {}
        for ctx, _ in encoded:
            options[tuple(ctx)] = options.get(tuple(ctx), 0) + 1
        option = min(max(len(cont) for _, cont in encoded), self.max_length - 1)
        context = min(max(len(ctx) for ctx in options), self.max_length - option)
        token = self.tokenizer.pad_token_id
        group = ([token] * context, [[token] * option] * max(options.values()))
        what = f"one question ({context}-token context, {len(group[1])} options of {option} tokens)"
        return self._fit(lambda n: self._score_groups([group] * n), what)

    def _fit_generation(self, prompt_tokens: int, new_tokens: int) -> int:
        """The largest batch whose prefill of prompt + new tokens fits: the KV cache generation fills, at most."""
        tokens = prompt_tokens + new_tokens

        def fits(n: int) -> None:
            ids = torch.full((n, tokens), self.tokenizer.pad_token_id, dtype=torch.long, device=self.device)
            with autocast(self.device, self.precision):
                self.model(ids, use_cache=True, logits_to_keep=1)

        return self._fit(fits, f"one prompt of {prompt_tokens} tokens and {new_tokens} new tokens")

    @torch.inference_mode()
    def _fit(self, fits: Callable[[int], object], what: str) -> int:
        """Set and return the batch size: searched where memory runs out in a catchable way (GPUs), else the
        CPU default. The probes' tokens are not counted in `usage`."""
        usage = dict(self.usage)
        self.batch_size = find_batch_size(fits, what) if oom_searchable(self.device) else CPU_AUTO_BATCH
        self.usage = usage
        return self.batch_size

    # ---------------------------------------------------------------- generation
    @torch.inference_mode()
    def generate(
        self,
        prompts: Sequence[str],
        config: GenerationConfig | None = None,
        add_special_tokens: bool = True,
        on_result: Callable[[int, str], None] | None = None,
    ) -> list[str]:
        """Decode a continuation for each prompt; stop strings are applied; results in the order of `prompts`.

        Prompts are batched longest first (left padded), so a batch holds prompts of similar length and the
        largest batch comes first. `on_result(i, text)` is called as soon as prompt i is done (e.g. to save it).
        """
        config = config or GenerationConfig()
        if not prompts:
            return []
        ids = self.tokenizer(list(prompts), add_special_tokens=add_special_tokens).input_ids
        if self.batch_size == "auto":
            self._fit_generation(max(len(i) for i in ids), config.max_new_tokens)
        order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))  # ties keep the input order
        outs: list[str] = [""] * len(ids)
        for start in range(0, len(order), self.batch_size):
            rows = order[start : start + self.batch_size]
            for i, text in zip(rows, self._generate_batch([ids[i] for i in rows], config, start), strict=True):
                outs[i] = text
                if on_result is not None:
                    on_result(i, text)
        return outs

    def _generate_batch(self, rows: list[list[int]], config: GenerationConfig, start: int) -> list[str]:
        """Decode one left-padded batch of token lists; `start` (the batch's position) seeds sampling."""
        tok = self.tokenizer
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), tok.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for r, row in enumerate(rows):
            ids[r, width - len(row) :] = torch.tensor(row, dtype=torch.long)
            mask[r, width - len(row) :] = 1
        kwargs = dict(
            max_new_tokens=config.max_new_tokens,
            do_sample=config.do_sample,
            pad_token_id=tok.pad_token_id,
            num_beams=1,
            repetition_penalty=1.0,
        )
        if config.do_sample:
            torch.manual_seed(derive_seed(config.seed, "local_sample", start))
            kwargs.update(temperature=config.temperature, top_p=config.top_p)
        else:
            kwargs.update(temperature=None, top_p=None, top_k=None)
        with autocast(self.device, self.precision):
            gen = self.model.generate(input_ids=ids.to(self.device), attention_mask=mask.to(self.device), **kwargs)
        new = gen[:, width:]
        self.usage["prompt_tokens"] += int(mask.sum())
        self.usage["completion_tokens"] += int((new != tok.pad_token_id).sum())
        return [apply_stop(tok.decode(row, skip_special_tokens=True), config.stop) for row in new]

    def render_chat(self, messages: list[dict[str, str]]) -> str:
        """The prompt string the chat template makes of `messages` (with the generation prompt)."""
        if not getattr(self.tokenizer, "chat_template", None):
            raise UserError(f"model {self.name} has no chat template; evaluate it with --mode base")
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def chat(
        self,
        conversations: Sequence[list[dict[str, str]]],
        config: GenerationConfig | None = None,
        on_result: Callable[[int, str], None] | None = None,
    ) -> list[str]:
        """Reply to each conversation (a list of {'role', 'content'} messages)."""
        prompts = [self.render_chat(m) for m in conversations]
        return self.generate(prompts, config, add_special_tokens=False, on_result=on_result)


def resolve_model(name_or_path: str) -> tuple[str, dict]:
    """The one alias table: aliases and GGUF files mapped to something `from_pretrained` loads fast."""
    from distillkit.lm.offline import SMOLLM2_NAME, gguf_to_hf_folder, smollm2_folder
    from distillkit.runs import cache_dir

    if name_or_path.lower() in {"smollm2", SMOLLM2_NAME, "smollm2-135m"}:
        return str(smollm2_folder()), {}
    p = Path(name_or_path).expanduser()
    if p.suffix == ".gguf":
        if not p.exists():
            raise UserError(f"GGUF file {p} does not exist; check the path")
        st = p.stat()
        key = hashlib.sha256(f"{p.resolve()}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()[:12]
        out = cache_dir() / "models" / f"{p.stem}-{key}"
        if not (out / "config.json").exists():
            out.parent.mkdir(parents=True, exist_ok=True)
            gguf_to_hf_folder(p, out)
        return str(out), {}
    if name_or_path.startswith((".", "/", "~")) and not p.exists():
        raise UserError(f"model folder {p} does not exist; check the path")
    return str(p) if p.exists() else name_or_path, {}


def model_identity(
    name_or_path: str, revision: str | None = None, adapter: str | None = None, trust_remote_code: bool = False
) -> str | None:
    """What a local model is, cheaply: its files' names, sizes and times for a folder or file (GGUF, converted
    alias), or the hub snapshot's commit for a cached hub id; None when neither can be read. With a PEFT
    `adapter`, its path and content hash follow (the adapter is checked against the model first).

    A hub id that is neither a local folder nor in the local hub cache is refused while downloads are off
    (`HF_HUB_OFFLINE=1`).
    """
    identity = _base_identity(name_or_path, revision)
    if adapter is None:
        return identity
    return f"{identity}+{adapter_identity(adapter, name_or_path, revision, trust_remote_code)}"


def _base_identity(name_or_path: str, revision: str | None) -> str | None:
    path = Path(resolve_model(name_or_path)[0])
    if path.exists():
        files = sorted(p for p in ([path] if path.is_file() else path.rglob("*")) if p.is_file())
        stats = [(str(p.relative_to(path.parent)), p.stat().st_size, p.stat().st_mtime_ns) for p in files]
        return "files:" + hashlib.sha256(json.dumps(stats).encode()).hexdigest()[:16]
    from huggingface_hub import constants, try_to_load_from_cache

    try:
        cached = try_to_load_from_cache(str(path), "config.json", revision=revision)
    except ValueError:  # not a valid hub id either
        cached = None
    if isinstance(cached, str):
        return f"revision:{Path(cached).parent.name}"
    if constants.HF_HUB_OFFLINE:
        raise UserError(
            f"model {name_or_path!r} is not a local folder and not in the local Hugging Face cache, and downloads "
            "are off (HF_HUB_OFFLINE=1); check the id, give a folder, a .gguf file or 'smollm2', or download it first"
        )
    return None


# ---- PEFT adapters --------------------------------------------------------------------------------------------


def model_names(name_or_path: str) -> set[str]:
    """The names a model goes by, lower-cased: as given, its last path part, and the repo of a hub cache folder."""
    path = Path(name_or_path.rstrip("/"))
    names = {str(path).lower(), path.name.lower()}
    for part in path.parts:
        if part.startswith("models--"):  # <hub cache>/models--org--name/snapshots/<commit>
            repo = part.removeprefix("models--").replace("--", "/").lower()
            names |= {repo, repo.rsplit("/", 1)[-1]}
    return names


def read_adapter(adapter: str, name_or_path: str) -> tuple[Path, dict]:
    """A PEFT adapter folder and its adapter_config.json; a folder that is missing, not an adapter, or made for
    another base model (by `base_model_name_or_path`) is one line."""
    path = Path(adapter).expanduser()
    if not path.exists():
        raise UserError(f"PEFT adapter folder {path} does not exist; check --peft")
    config_file = path / "adapter_config.json"
    if not config_file.is_file():
        raise UserError(
            f"{path} is not a PEFT adapter folder (no adapter_config.json); give --peft the folder that the "
            "adapter's save_pretrained wrote"
        )
    try:
        config = json.loads(config_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        config = None
    if not isinstance(config, dict):
        raise UserError(f"{config_file} is not a valid adapter config (not a JSON object); save the adapter again")
    base = config.get("base_model_name_or_path")
    ours = model_names(name_or_path) | model_names(resolve_model(name_or_path)[0])
    if base and not model_names(base) & ours:
        raise UserError(
            f"PEFT adapter {path} was made for base model {base!r}, not {name_or_path!r}; evaluate it with that "
            "model (or, if this one is a copy of it, put its name into base_model_name_or_path in adapter_config.json)"
        )
    return path, config


def adapter_digest(path: Path) -> str:
    """sha256 over the files of an adapter folder (names and bytes; subfolders such as checkpoints left out)."""
    h = hashlib.sha256()
    for f in sorted(p for p in path.iterdir() if p.is_file()):
        h.update(f"{f.name}:{file_digest(f)}\n".encode())
    return h.hexdigest()[:16]


def attach_adapter(model, adapter: Path, name_or_path: str, merge: bool = False):
    """`model` with the PEFT adapter saved in `adapter` (merged into the weights when `merge`). An adapter
    whose modules or shapes do not fit the model is one line. A model on the meta device (a skeleton without
    weights) checks the fit only."""
    from peft import PeftModel

    skeleton = next(model.parameters()).device.type == "meta"
    try:
        model = PeftModel.from_pretrained(model, str(adapter), low_cpu_mem_usage=skeleton)
    except (RuntimeError, ValueError, KeyError) as e:
        if is_out_of_memory(e):
            raise
        lines = [line.strip() for line in str(e).splitlines() if line.strip()] or [type(e).__name__]
        reason = next((line for line in lines if not line.endswith(":")), lines[0])
        raise UserError(
            f"PEFT adapter {adapter} does not fit model {name_or_path!r} ({reason[:200]}); give the adapter "
            "made for this model"
        ) from None
    return model.merge_and_unload() if merge and not skeleton else model


def adapter_identity(adapter: str, name_or_path: str, revision: str | None, trust_remote_code: bool) -> str:
    """The adapter's path and content hash, after checking it against a weightless skeleton of the model
    (its config only: seconds even for a 70B model)."""
    from accelerate import init_empty_weights
    from transformers import AutoConfig, AutoModelForCausalLM

    path, _ = read_adapter(adapter, name_or_path)
    model_path, kwargs = resolve_model(name_or_path)
    kwargs = {**kwargs, "revision": revision, "trust_remote_code": trust_remote_code}
    try:
        config = AutoConfig.from_pretrained(model_path, **kwargs)
    except (OSError, ValueError, KeyError) as e:
        raise load_failure(name_or_path, e) from None
    with init_empty_weights():
        skeleton = AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code)
    attach_adapter(skeleton, path, name_or_path)
    return f"adapter:{path.resolve()}:{adapter_digest(path)}"


# ---- placement, dtype and batch size --------------------------------------------------------------------------

AUTO_BATCH_CAP = 128  # --batch-size auto stops doubling here (bigger batches gain little)
CPU_AUTO_BATCH = 8  # --batch-size auto on a CPU: running out of memory there cannot be caught, so no search


def input_device(model) -> torch.device:
    """Where a model's inputs go: the device of its input embeddings; when accelerate offloaded them (weights
    on "meta"), the first GPU of its device map, where accelerate runs them."""
    try:
        device = model.get_input_embeddings().weight.device
    except (AttributeError, NotImplementedError):
        device = next(model.parameters()).device
    if device.type == "meta":
        gpus = [d for d in (getattr(model, "hf_device_map", None) or {}).values() if d not in ("cpu", "disk")]
        device = torch.device(gpus[0] if gpus else "cpu")
    return device


def placement_summary(device_map: dict) -> dict[str, int]:
    """How many modules of a device map sit on each device (GPU indices written as cuda:N)."""
    counts: dict[str, int] = {}
    for device in device_map.values():
        name = f"cuda:{device}" if isinstance(device, int) else str(device)
        counts[name] = counts.get(name, 0) + 1
    return counts


def resolve_placement(
    device: str | torch.device | None, dtype: str | None, precision: str, device_map: str | None
) -> tuple[torch.device, torch.dtype]:
    """The device (with `device_map="auto"`: the first GPU, or the CPU) and weights' dtype of a local model; a
    device, dtype, precision or device map this machine cannot run is one line, before any work."""
    if device_map not in (None, "auto"):
        raise UserError(f"device map {device_map!r} is not supported; use 'auto' (or none, for one device)")
    if device_map == "auto" and str(device or "auto").strip().lower() != "auto":
        raise UserError(
            f"--device-map auto spreads the model over the GPUs and the CPU itself; drop --device {device} "
            "(choose the GPUs with CUDA_VISIBLE_DEVICES)"
        )
    resolved = resolve_device(device)
    torch_dtype = weight_dtype(dtype, resolved)
    check_precision(precision, resolved)
    return resolved, torch_dtype


def check_batch_size(batch_size: int | str) -> int | str:
    """A batch size: a positive integer, or "auto" (found on the first batch of work)."""
    if batch_size == "auto" or (isinstance(batch_size, int) and not isinstance(batch_size, bool) and batch_size > 0):
        return batch_size
    raise UserError(f"batch size {batch_size!r} is not supported; give a positive integer or 'auto'")


def oom_searchable(device: torch.device) -> bool:
    """Whether running out of memory on `device` raises an error a batch-size search can catch (CUDA, MPS)."""
    return device.type in ("cuda", "mps")


def is_out_of_memory(error: BaseException) -> bool:
    """Whether `error` says a device ran out of memory (CUDA's OutOfMemoryError, or MPS's RuntimeError)."""
    return isinstance(error, torch.OutOfMemoryError) or (
        isinstance(error, RuntimeError) and "out of memory" in str(error).lower()
    )


def find_batch_size(fits: Callable[[int], object], what: str = "one item", cap: int = AUTO_BATCH_CAP) -> int:
    """The largest of 1, 2, 4, ... up to `cap` for which `fits(n)` runs without running out of device memory:
    sizes double until one runs out (or `cap` is reached); the last size that ran is kept. Out of memory even
    for 1 is one line naming `what` did not fit."""
    size, good = 1, 0
    while size <= cap:
        if not _runs(fits, size):
            break
        good = size
        size *= 2
    if not good:
        raise UserError(
            f"the model runs out of memory on {what}; lower --max-length, use --dtype bf16, or spread the "
            "model with --device-map auto"
        )
    return good


def _runs(fits: Callable[[int], object], size: int) -> bool:
    """Whether `fits(size)` ran; out of memory gives False (after freeing what the attempt held)."""
    try:
        fits(size)
        return True
    except RuntimeError as e:  # torch.OutOfMemoryError is a RuntimeError
        if not is_out_of_memory(e):
            raise
    gc.collect()  # outside the except block: the traceback, and the tensors its frames hold, are gone
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return False


WEIGHT_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def _text_digest(text: str | dict | None) -> str | None:
    """sha256 of a chat template (a string, or a dict of named templates), to tell templates apart."""
    if not text:
        return None
    return hashlib.sha256(json.dumps(text, sort_keys=True).encode()).hexdigest()[:16]


def weight_dtype(dtype: str | None, device: torch.device) -> torch.dtype:
    """The weights' dtype: as named, else bfloat16 on a CUDA GPU that supports it and float32 elsewhere."""
    if dtype is None or dtype.strip().lower() == "auto":
        return torch.bfloat16 if device.type == "cuda" and bf16_supported(device) else torch.float32
    aliases = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16", "half": "float16"}
    name = aliases.get(dtype.strip().lower(), dtype.strip().lower())
    if name not in WEIGHT_DTYPES:
        raise UserError(f"dtype {dtype!r} is not supported; use one of {', '.join(WEIGHT_DTYPES)}")
    if name == "bfloat16":
        check_precision("bf16", device)
    return WEIGHT_DTYPES[name]


def load_failure(name_or_path: str, error: BaseException) -> UserError:
    """The one line for a model that transformers could not load."""
    first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return UserError(
        f"could not load model {name_or_path!r} ({first[:200]}); give a local folder, a .gguf file, "
        "'smollm2', or a Hugging Face id that is in the local cache"
    )


def load_local_lm(
    name_or_path: str,
    device: str | torch.device | None = "auto",
    dtype: str | None = None,
    max_length: int = 2048,
    batch_size: int | str = 8,
    precision: str = "fp32",
    revision: str | None = None,
    trust_remote_code: bool = False,
    device_map: str | None = None,
    peft: str | None = None,
    peft_merge: bool = False,
) -> LocalLM:
    """Load a Hugging Face model id, a local folder, a `.gguf` file, or the alias `smollm2`.

    GGUF files are dequantised once into an fp32 folder under the distillkit cache, so later loads are fast.
    `device` follows `distillkit.devices.resolve_device` ("auto": CUDA when present, else CPU). `dtype`
    (weights) defaults to float32 on CPU and bfloat16 on a CUDA GPU that has it; `precision="bf16"` keeps
    the weights' dtype and runs the forward passes under bfloat16 autocast. `revision` pins a hub model to a
    branch, tag or commit; `trust_remote_code` runs a model's own modelling code (off unless asked).

    Big models: `device_map="auto"` lets accelerate spread the weights over all GPUs, then the CPU (instead of
    one `device`); `peft` puts the PEFT/LoRA adapter saved in that folder on the weights (`peft_merge`: merged
    into them, faster); `batch_size="auto"` finds the largest batch that fits (see `LocalLM`).
    """
    from distillkit.lm.hf import load_causal_lm

    device, torch_dtype = resolve_placement(device, dtype, precision, device_map)
    check_batch_size(batch_size)
    adapter = read_adapter(peft, name_or_path)[0] if peft else None  # a wrong folder is refused before the load
    placement = {"device_map": device_map} if device_map else {}
    t0 = time.time()
    model, tokenizer = load_causal_lm(
        name_or_path, torch_dtype, revision=revision, trust_remote_code=trust_remote_code, **placement
    )
    model = model if placement else model.to(device)
    info = None
    if adapter is not None:
        model = attach_adapter(model, adapter, name_or_path, merge=peft_merge)
        info = {"path": str(adapter.resolve()), "sha256": adapter_digest(adapter), "merged": peft_merge}
    lm = LocalLM(model, tokenizer, name_or_path, max_length, batch_size, precision, adapter=info)
    lm.load_seconds = time.time() - t0
    return lm
