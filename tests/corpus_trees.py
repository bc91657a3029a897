"""Tiny corpus folders with each corpus's official naming, for the adapter tests.

Every builder writes a few short synthetic clips under `root`, plus files the adapter must skip
(foreign names) and, unless ``broken=False``, one file that follows the naming but is not audio
(it must end up in ``attrs["skipped"]``). It returns a `Tree` saying what the manifest must hold.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from tests import audio_factory

SAMPLING_RATE = 16000


@dataclass
class Tree:
    """A corpus folder and the manifest rows an adapter must make of it."""

    root: Path
    rows: list[dict] = field(default_factory=list)
    broken: list[Path] = field(default_factory=list)
    foreign: list[Path] = field(default_factory=list)
    _clips: dict[float, Path] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.root = self.root.resolve()  # adapters report resolved paths

    def clip(self, relative: str, seconds: float = 0.3, **expected: str) -> Path:
        """Write a clip that must be listed with the `expected` column values."""
        path = self._write(relative, seconds)
        self.rows.append({"utt_id": Path(relative).stem, **expected, "path": str(path), "duration": seconds})
        return path

    def audio(self, relative: str, seconds: float = 0.3) -> Path:
        """Write a clip that may or may not be listed (the test decides)."""
        return self._write(relative, seconds)

    def skip(self, relative: str) -> Path:
        """Write a valid clip whose name the adapter must not list."""
        path = self._write(relative, 0.2)
        self.foreign.append(path)
        return path

    def bad(self, relative: str) -> Path:
        """Write a file that follows the naming but holds text, not audio."""
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("this is not audio\n")
        self.broken.append(path)
        return path

    def _write(self, relative: str, seconds: float) -> Path:
        # One synthesis per duration, then copies: keeps big trees fast.
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if seconds not in self._clips:
            self._clips[seconds] = audio_factory.write(path, seconds, SAMPLING_RATE, seed=len(self._clips))
        else:
            shutil.copyfile(self._clips[seconds], path)
        return path


def shemo(root: Path, broken: bool = True) -> Tree:
    tree = Tree(root)
    tree.clip("female/F03S02.wav", 0.30, speaker="F03", gender="female", label="sad")
    tree.clip("female/F21N37.wav", 0.25, speaker="F21", gender="female", label="neutral")
    tree.clip("female/F01F01.wav", 0.20, speaker="F01", gender="female", label="fearful")
    tree.clip("male/M01A01.wav", 0.35, speaker="M01", gender="male", label="angry")
    tree.clip("male/M32H05.wav", 0.30, speaker="M32", gender="male", label="happy")
    tree.clip("male/extra/M05W12.wav", 0.40, speaker="M05", gender="male", label="surprised")
    tree.skip("female/F3S02.wav")
    tree.skip("female/F03X02.wav")
    if broken:
        tree.bad("male/M02N03.wav")
    return tree


def emodb(root: Path, broken: bool = True) -> Tree:
    tree = Tree(root)
    tree.clip("wav/03a01Fa.wav", 0.30, speaker="03", gender="male", label="happiness")
    tree.clip("wav/08b02Wb.wav", 0.25, speaker="08", gender="female", label="anger")
    tree.clip("wav/16a05Lc.wav", 0.20, speaker="16", gender="female", label="boredom")
    tree.clip("wav/10b10Ta.wav", 0.35, speaker="10", gender="male", label="sadness")
    tree.clip("wav/11a07Ad.wav", 0.30, speaker="11", gender="male", label="fear")
    tree.clip("wav/12b09Ea.wav", 0.30, speaker="12", gender="male", label="disgust")
    tree.clip("wav/13a02Na.wav", 0.30, speaker="13", gender="female", label="neutral")
    tree.skip("wav/05a01Fa.wav")  # speaker 05 is not in the corpus
    tree.skip("wav/03a01Xa.wav")  # no emotion X
    (root / "lablaut").mkdir(parents=True)
    (root / "lablaut" / "03a01Fa.lab").write_text("not audio, not listed\n")
    if broken:
        tree.bad("wav/14a04Fb.wav")
    return tree


def ravdess(root: Path, broken: bool = True) -> Tree:
    tree = Tree(root)
    tree.clip("Actor_01/03-01-01-01-01-01-01.wav", 0.30, speaker="Actor_01", gender="male", label="neutral")
    tree.clip("Actor_02/03-01-02-02-01-02-02.wav", 0.25, speaker="Actor_02", gender="female", label="calm")
    tree.clip("Actor_12/03-01-06-01-02-01-12.wav", 0.20, speaker="Actor_12", gender="female", label="fearful")
    tree.clip("Actor_23/03-01-08-02-02-02-23.wav", 0.35, speaker="Actor_23", gender="male", label="surprised")
    tree.clip("Actor_24/03-01-07-01-01-01-24.wav", 0.30, speaker="Actor_24", gender="female", label="disgust")
    tree.audio("Actor_01/03-02-03-01-01-01-01.wav")  # song: left out by design
    tree.audio("Actor_01/01-01-03-01-01-01-01.wav")  # audio-video: left out by design
    tree.skip("Actor_01/03-01-09-01-01-01-01.wav")  # no emotion 09
    tree.skip("Actor_01/03-01-01-01-01-01-25.wav")  # no actor 25
    if broken:
        tree.bad("Actor_05/03-01-05-01-01-01-05.wav")
    return tree


#: ``VideoDemographics.csv`` in the official layout (ages and the rest made up).
DEMOGRAPHICS = (
    "ActorID,Age,Sex,Race,Ethnicity\n"
    "1001,51,Male,Caucasian,Not Hispanic\n"
    "1002,21,Female,Caucasian,Not Hispanic\n"
    "1040,33,Male,African American,Not Hispanic\n"
    "1091,29,Female,Asian,Not Hispanic\n"
)


def crema_d(root: Path, broken: bool = True, demographics: bool = True) -> Tree:
    tree = Tree(root)
    tree.clip("AudioWAV/1001_DFA_ANG_XX.wav", 0.30, speaker="1001", gender="male", label="anger")
    tree.clip("AudioWAV/1002_IEO_HAP_HI.wav", 0.25, speaker="1002", gender="female", label="happy")
    tree.clip("AudioWAV/1040_ITH_SAD_X.wav", 0.20, speaker="1040", gender="male", label="sad")  # official quirk
    tree.clip("AudioWAV/1091_WSI_NEU_LO.wav", 0.35, speaker="1091", gender="female", label="neutral")
    tree.clip("AudioWAV/1002_TSI_DIS_MD.wav", 0.30, speaker="1002", gender="female", label="disgust")
    tree.clip("AudioWAV/1001_IWL_FEA_XX.wav", 0.30, speaker="1001", gender="male", label="fear")
    tree.skip("AudioWAV/1001_XYZ_ANG_XX.wav")  # no sentence XYZ
    tree.skip("AudioWAV/1001_DFA_ANG_XX (1).wav")
    if demographics:
        (root / "VideoDemographics.csv").write_text(DEMOGRAPHICS)
    if broken:
        tree.bad("AudioWAV/1003_TIE_FEA_MD.wav")
    return tree


def tess(root: Path, broken: bool = True) -> Tree:
    tree = Tree(root)
    tree.clip("OAF_angry/OAF_back_angry.wav", 0.30, speaker="OAF", gender="female", label="angry")
    tree.clip("OAF_Fear/OAF_bar_fear.wav", 0.25, speaker="OAF", gender="female", label="fear")
    tree.clip("OAF_Pleasant_surprise/OAF_bean_ps.wav", 0.20, speaker="OAF", gender="female", label="surprised")
    tree.clip("OAF_disgust/OAF_boat_disgust.wav", 0.30, speaker="OAF", gender="female", label="disgust")
    tree.clip("YAF_pleasant_surprised/YAF_base_ps.wav", 0.35, speaker="YAF", gender="female", label="surprised")
    tree.clip("YAF_fear/YAF_bath_Fear.wav", 0.30, speaker="YAF", gender="female", label="fear")
    tree.clip("YAF_sad/YAF_beg_sad.wav", 0.30, speaker="YAF", gender="female", label="sad")
    tree.clip("YAF_neutral/YAF_bite_neutral.wav", 0.30, speaker="YAF", gender="female", label="neutral")
    tree.clip("YAF_happy/YAF_bone_happy.wav", 0.30, speaker="YAF", gender="female", label="happy")
    # The release's quirk: off only in the speaker code; its folder names speaker and label.
    tree.clip("OAF_neutral/OA_bite_neutral.wav", 0.30, speaker="OAF", gender="female", label="neutral")
    tree.skip("OAF_angry/OAF_back_angry_copy.wav")
    tree.skip("extras/ZAF_back_angry.wav")
    if broken:
        tree.bad("YAF_happy/YAF_book_happy.wav")
    return tree


def emovo(root: Path, broken: bool = True) -> Tree:
    tree = Tree(root)
    tree.clip("f1/dis-f1-b1.wav", 0.30, speaker="f1", gender="female", label="disgust")
    tree.clip("f1/neu-f1-l1.wav", 0.25, speaker="f1", gender="female", label="neutral")
    tree.clip("f2/gio-f2-l4.wav", 0.20, speaker="f2", gender="female", label="joy")
    tree.clip("f3/rab-f3-b3.wav", 0.30, speaker="f3", gender="female", label="anger")
    tree.clip("m1/pau-m1-d2.wav", 0.35, speaker="m1", gender="male", label="fear")
    tree.clip("m2/sor-m2-n1.wav", 0.30, speaker="m2", gender="male", label="surprise")
    tree.clip("m3/tri-m3-n5.wav", 0.30, speaker="m3", gender="male", label="sadness")
    tree.skip("f1/dis-f1-b1 copy.wav")
    tree.skip("f1/xyz-f1-b1.wav")
    if broken:
        tree.bad("m2/neu-m2-b2.wav")
    return tree


def urdu(root: Path, broken: bool = True) -> Tree:
    tree = Tree(root)
    tree.clip("Angry/SM1_F10_A010.wav", 0.30, speaker="SM1", gender="male", label="angry")
    tree.clip("Happy/SF2_F3_H005.wav", 0.25, speaker="SF2", gender="female", label="happy")
    tree.clip("Neutral/SM24_F1_N001.wav", 0.20, speaker="SM24", gender="male", label="neutral")
    tree.clip("Sad/SF10_F1_S01.wav", 0.35, speaker="SF10", gender="female", label="sad")
    tree.skip("Angry/readme.wav")
    tree.skip("Other/SM1_F1_A001.wav")  # not in an emotion folder
    if broken:
        tree.bad("Sad/SM3_F2_S002.wav")
    return tree


_EVALUATION_1 = """% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]

[6.2901 - 8.2357]\tSes01F_impro01_F000\tneu\t[2.5000, 2.5000, 2.5000]
C-E2:\tNeutral;\t()
C-E3:\tNeutral;\t()
A-E3:\tval 3; act 2; dom  2;\t()

[10.0100 - 11.3925]\tSes01F_impro01_M000\tfru\t[2.0000, 3.5000, 3.5000]
C-E2:\tFrustration;\t()

[14.8872 - 18.0175]\tSes01F_impro01_M001\texc\t[3.5000, 3.5000, 3.0000]

[20.0000 - 21.5000]\tSes01F_impro01_F001\thap\t[4.0000, 3.0000, 3.0000]

[22.0000 - 23.0000]\tSes01F_impro01_F002\tneu\t[2.5000, 2.5000, 2.5000]
"""

_EVALUATION_2 = """% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]

[1.0000 - 2.5000]\tSes02M_script01_1_F003\tang\t[1.5000, 4.0000, 4.0000]

[3.0000 - 5.0000]\tSes02M_script01_1_M010\tsad\t[1.5000, 2.0000, 2.0000]

[6.0000 - 7.0000]\tSes02M_script01_1_F004\txxx\t[2.5000, 2.5000, 2.5000]

[8.0000 - 9.0000]\tBadly_named\tneu\t[2.5000, 2.5000, 2.5000]
"""

_TRANSCRIPTION_1 = """Ses01F_impro01_F000 [006.2901-008.2357]: Excuse me.
Ses01F_impro01_M000 [010.0100-011.3925]: Do you have your forms?
Ses01F_impro01_M001 [014.8872-018.0175]: Yeah, great!
Ses01F_impro01_F001 [020.0000-021.5000]: Oh, that's  wonderful.
M: [BREATHING]
"""


def iemocap(root: Path, broken: bool = True) -> Tree:
    tree = Tree(root)
    s1, s2 = root / "Session1", root / "Session2"
    (s1 / "dialog" / "EmoEvaluation" / "Categorical").mkdir(parents=True)
    (s1 / "dialog" / "EmoEvaluation" / "Ses01F_impro01.txt").write_text(_EVALUATION_1)
    # Per-annotator ratings live in subfolders and must not be read as labels.
    (s1 / "dialog" / "EmoEvaluation" / "Categorical" / "Ses01F_impro01_e1_cat.txt").write_text(
        "[1.0 - 2.0]\tSes01F_impro01_F009\tang\t[1, 1, 1]\n"
    )
    (s1 / "dialog" / "transcriptions").mkdir(parents=True)
    (s1 / "dialog" / "transcriptions" / "Ses01F_impro01.txt").write_text(_TRANSCRIPTION_1)
    (s2 / "dialog" / "EmoEvaluation").mkdir(parents=True)
    (s2 / "dialog" / "EmoEvaluation" / "Ses02M_script01_1.txt").write_text(_EVALUATION_2)
    wav1 = "Session1/sentences/wav/Ses01F_impro01"
    wav2 = "Session2/sentences/wav/Ses02M_script01_1"
    tree.clip(f"{wav1}/Ses01F_impro01_F000.wav", 0.30, speaker="Ses01F", gender="female", label="neutral",
              session="Session1", transcript="Excuse me.")
    tree.audio(f"{wav1}/Ses01F_impro01_M000.wav")  # frustration: left out of 4 classes
    tree.clip(f"{wav1}/Ses01F_impro01_M001.wav", 0.25, speaker="Ses01M", gender="male", label="happy",
              session="Session1", transcript="Yeah, great!")
    tree.clip(f"{wav1}/Ses01F_impro01_F001.wav", 0.20, speaker="Ses01F", gender="female", label="happy",
              session="Session1", transcript="Oh, that's  wonderful.")
    tree.clip(f"{wav2}/Ses02M_script01_1_F003.wav", 0.35, speaker="Ses02F", gender="female", label="angry",
              session="Session2", transcript="")
    tree.clip(f"{wav2}/Ses02M_script01_1_M010.wav", 0.30, speaker="Ses02M", gender="male", label="sad",
              session="Session2", transcript="")
    tree.audio(f"{wav2}/Ses02M_script01_1_F004.wav")  # xxx: no majority label
    if broken:
        tree.bad(f"{wav1}/Ses01F_impro01_F002.wav")
    else:
        tree.clip(f"{wav1}/Ses01F_impro01_F002.wav", 0.30, speaker="Ses01F", gender="female", label="neutral",
                  session="Session1", transcript="")
    return tree


#: Corpus name -> builder.
BUILDERS = {
    "shemo": shemo,
    "emodb": emodb,
    "ravdess": ravdess,
    "crema_d": crema_d,
    "tess": tess,
    "iemocap": iemocap,
    "emovo": emovo,
    "urdu": urdu,
}
