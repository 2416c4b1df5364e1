from multistream.bench import listening_cache


def test_listening_cache_keeps_one_token_per_row_under_invisible_silence(wrap):
    model = wrap("llama")
    got = listening_cache(model, doc_tokens=200)
    # a row of a listening session holds one input token: the visible rule stores all six streams of it
    assert got["invisible"] == 1.0
    assert got["visible"] == len(model.layout)
    assert got["rows"] >= 200 and model.silence == "invisible"
