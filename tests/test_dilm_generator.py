"""Generator: added tokens, encoding, per-sample loss, sampling, save/load, and its bad-input errors."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch

from distillkit.errors import UserError
from distillkit.text.generator import SEP, Generator
from distillkit.text.models import load_encoder_classifier


@pytest.fixture(scope="module")
def gen():
    return Generator.create("tiny-gpt2", 3, 2, max_length=20, seed=0)


def test_class_tokens_start_as_end_of_text_embedding(gen):
    emb = gen.model.get_input_embeddings().weight
    eos = emb[gen.tokenizer.eos_token_id]
    for i in gen.class_ids:
        assert torch.equal(emb[i], eos)
    assert len(set(gen.class_ids)) == 3 and gen.sep_id not in gen.class_ids
    assert gen.tokenizer.convert_ids_to_tokens(gen.sep_id) == SEP


def test_encoding_layout_and_padding(gen):
    enc = gen.encode([("how are you", "fine"), ("a",)], [2, 0])
    ids, mask = enc["input_ids"], enc["attention_mask"]
    assert ids.shape[1] % 8 == 0
    assert ids[0, 0] == gen.class_ids[2] and ids[1, 0] == gen.class_ids[0]
    n0 = int(mask[0].sum())
    assert ids[0, n0 - 1] == gen.tokenizer.eos_token_id and gen.sep_id in ids[0, :n0].tolist()
    assert (ids[0, n0:] == gen.tokenizer.pad_token_id).all()
    unl = gen.encode([("x",)], None)["input_ids"]
    assert unl[0, 0] == gen.tokenizer.eos_token_id


def test_per_sample_loss_padded_normaliser(gen):
    gen.model.eval()
    texts, labels = [("short", "b"), ("a much longer example sentence here", "and its pair")], [0, 1]
    loss = gen.per_sample_loss(texts, labels)
    single = gen.per_sample_loss(texts[:1], labels[:1])
    enc_pair, enc_one = gen.encode(texts, labels), gen.encode(texts[:1], labels[:1])
    # the first sample's summed CE is the same; only the (padded length - 1) normaliser differs
    ratio = (enc_one["input_ids"].shape[1] - 1) / (enc_pair["input_ids"].shape[1] - 1)
    torch.testing.assert_close(loss[0], single[0] * ratio, rtol=1e-4, atol=1e-6)
    gen.normalize = "true_length"
    try:
        torch.testing.assert_close(
            gen.per_sample_loss(texts, labels)[0], gen.per_sample_loss(texts[:1], labels[:1])[0], rtol=1e-4, atol=1e-6
        )
    finally:
        gen.normalize = "padded"
    loss.sum().backward()
    assert gen.model.get_input_embeddings().weight.grad.abs().sum() > 0


def test_sampling_is_seeded_and_splits_fields():
    g = Generator.create("tiny-gpt2", 2, 1, max_length=12, seed=0)
    a = g.sample(1, 5, seed=4, batch_size=8)
    assert a == g.sample(1, 5, seed=4, batch_size=8) and a != g.sample(1, 5, seed=5, batch_size=8)
    assert len(a) == 5 and all(len(t) == 1 and t[0] and "<bos_" not in t[0] for t in a)


def test_generator_producing_empty_texts_is_one_clear_line(monkeypatch):
    g = Generator.create("tiny-gpt2", 2, 1, max_length=12, seed=0)
    eos = g.tokenizer.eos_token_id

    def only_eos(input_ids, **kw):
        return torch.cat([input_ids, torch.full((input_ids.shape[0], 3), eos)], 1)

    monkeypatch.setattr(g.model, "generate", only_eos)
    with pytest.raises(UserError, match="too few usable .non-empty. texts for class 0.*train stage 1 longer"):
        g.sample(0, 4, seed=0, max_attempts=2)


def test_save_and_load_round_trip(gen, tmp_path):
    gen.save(tmp_path / "g")
    back = Generator.load(tmp_path / "g")
    assert back.class_ids == gen.class_ids and back.num_fields == 2 and back.max_length == 20
    gen.model.eval()
    back.model.eval()
    x = [("hello", "there")]
    torch.testing.assert_close(back.per_sample_loss(x, [1]), gen.per_sample_loss(x, [1]))
    with pytest.raises(UserError, match="not a saved generator"):
        Generator.load(tmp_path)


def test_an_encoder_classifier_that_cannot_be_loaded(tmp_path):
    with pytest.raises(UserError, match="could not load"):
        load_encoder_classifier(str(tmp_path / "nowhere"), 2)


def test_learner_tokenizer_without_pad_token(tmp_path):
    model, tok = load_encoder_classifier("tiny-bert", 2)
    tok.pad_token = None
    model.save_pretrained(tmp_path / "nopad")
    tok.save_pretrained(tmp_path / "nopad")
    with pytest.raises(UserError, match="has no pad token"):
        load_encoder_classifier(str(tmp_path / "nopad"), 2)


def _one_step_rows(mult: float) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """Embedding rows before and after one seeded AdamW step taken with the class-token multiplier."""
    g = Generator.create("tiny-gpt2", 2, 1, max_length=12, seed=0)
    opt = torch.optim.AdamW(g.model.parameters(), lr=1e-3)
    before = g.model.get_input_embeddings().weight.detach().clone()
    torch.manual_seed(0)
    g.per_sample_loss([("good food",), ("bad food",)], [0, 1]).mean().backward()
    with g.class_token_lr(mult):
        opt.step()
    return before, g.model.get_input_embeddings().weight.detach().clone(), g.class_ids


def test_class_token_lr_scales_only_the_class_token_rows():
    before, plain, ids = _one_step_rows(1.0)
    _, boosted, ids2 = _one_step_rows(50.0)
    assert ids == ids2
    rest = [i for i in range(before.shape[0]) if i not in ids]
    moved = (plain[ids] - before[ids]).abs().max()
    assert moved > 0
    torch.testing.assert_close(boosted[ids] - before[ids], 50.0 * (plain[ids] - before[ids]), rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(boosted[rest], plain[rest])
