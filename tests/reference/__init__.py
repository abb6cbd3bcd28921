"""PyTorch reference side of the parity tests.

- `torch_sagan`: the chapter's modules (book 5-4 SAGAN), the official/BigGAN attention,
  and the chapter's train-step body. Needs torch.
- `cases`: one function per parity case, `case_xxx(seed) -> dict[str, np.ndarray]`. Needs torch.
- `fixtures`: `load_fixture(name)`, `torch_available()`. Needs numpy only.
- `make_fixtures`: regenerates `fixtures/*.npz` (seed 0).

See README.md in this folder for every key of every case.
"""
