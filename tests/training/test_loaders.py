from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from training.errors import DataError
from training.loaders import ColumnMapping, load_any, load_atomic, load_table


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_csv_with_column_mapping(tmp_path: Path) -> None:
    f = _write(tmp_path / "e.csv", "uid,sku,ts,action\nu1,a,1,view\nu1,b,2,buy\n")
    raw = load_table(f, ColumnMapping("uid", "sku", "ts", "action"))
    assert raw.interactions.columns.tolist() == ["user_id", "item_id", "timestamp", "event_type"]
    assert raw.interactions["event_type"].tolist() == ["view", "buy"]
    assert raw.interactions["timestamp"].dtype == "float64"


def test_parquet_with_default_event_type(tmp_path: Path) -> None:
    f = tmp_path / "e.parquet"
    pd.DataFrame({"user_id": [1, 2], "item_id": [3, 4], "timestamp": [5, 6]}).to_parquet(f)
    raw = load_table(f)
    assert raw.interactions["user_id"].tolist() == ["1", "2"]
    assert set(raw.interactions["event_type"]) == {"interaction"}


def test_missing_column_names_file_and_column(tmp_path: Path) -> None:
    f = _write(tmp_path / "e.csv", "user_id,item_id\nu1,a\n")
    with pytest.raises(DataError) as err:
        load_table(f)
    assert err.value.file == str(f) and err.value.column == "timestamp"
    assert "missing" in str(err.value)


def test_non_numeric_timestamp_names_row(tmp_path: Path) -> None:
    f = _write(tmp_path / "e.csv", "user_id,item_id,timestamp\nu1,a,1\nu1,b,yesterday\n")
    with pytest.raises(DataError) as err:
        load_table(f)
    assert (err.value.column, err.value.row) == ("timestamp", 2)
    assert "yesterday" in str(err.value)


@pytest.mark.parametrize("content", ["", "user_id,item_id,timestamp\n"])
def test_empty_input_is_refused(tmp_path: Path, content: str) -> None:
    f = _write(tmp_path / "e.csv", content)
    with pytest.raises(DataError, match="e.csv"):
        load_table(f)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found"):
        load_table(tmp_path / "nope.csv")


def test_atomic_directory_with_items(tmp_path: Path) -> None:
    _write(tmp_path / "x.inter", "user_id:token\titem_id:token\ttimestamp:float\n1\t7\t10\n")
    _write(tmp_path / "x.item", "item_id:token\tmovie_title:token_seq\tclass:token_seq\n7\tHeat\tCrime\n")
    raw = load_atomic(tmp_path)
    assert raw.items.iloc[0].to_dict() == {"item_id": "7", "title": "Heat", "category": "Crime"}
    assert load_any(tmp_path).interactions["item_id"].tolist() == ["7"]


def test_directory_without_data_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="neither"):
        load_any(tmp_path)


def test_movielens_100k_is_real(ml100k_dir: Path) -> None:
    raw = load_atomic(ml100k_dir)
    inter = raw.interactions
    assert len(inter) == 100_000
    assert inter["user_id"].nunique() == 943 and inter["item_id"].nunique() == 1682
    assert raw.items.set_index("item_id").loc["1", "title"] == "Toy Story"


def test_text_is_read_as_utf8_else_latin1(tmp_path: Path) -> None:
    from training.loaders import _read_frame

    utf8 = tmp_path / "items.csv"
    utf8.write_bytes("item_id,title\n1,Cérémonie\n".encode())
    assert _read_frame(utf8)["title"].tolist() == ["Cérémonie"]
    legacy = tmp_path / "legacy.csv"
    legacy.write_bytes("item_id,title\n1,Cérémonie\n".encode("latin-1"))
    assert _read_frame(legacy)["title"].tolist() == ["Cérémonie"]
