# scriptForPI.py: restore the calibrated MeasurementSets of this MOUS from the raw ASDMs.
# Written for almadeliver's simulated deliveries (Python 3, CASA 6), following ALMA's
# scriptForPI contract. Run it from inside the "script" folder of the delivery:
#
#     casa -c "SPACESAVING=1; execfile('scriptForPI.py')"
#
# Globals it reads (set them before execfile):
#   SPACESAVING  0 (default) keep every intermediate MS; 1 delete *.ms.split; 2 also *.ms;
#                3 also *.ms.split.cal once calibrated.ms exists; -1 skip the disk space check
#   DOSPLIT      True (default): keep the per-EB *.ms.split.cal; False: keep the unsplit *.ms.split
#   USEMS        run even though ../calibrated already exists (reuse what is there)
#
# As ALMA's scriptForPI, it runs the calibration scripts with applyonly = True: the tables come from
# ../calibration/<EB>.calibration.tgz and only the steps that apply them run (their titles are in
# APPLY_STEPS). The simulated reducer's own run sets applyonly = False before execfile.
import glob
import os
import shutil
import re
import subprocess
import sys
import tarfile

scriptversion = '2.0-almadeliver'
casalog.post('Running scriptForPI.py version ' + scriptversion)
print('scriptForPI.py version ' + scriptversion)

savingslevel = int(globals().get('SPACESAVING', 0))
dosplit = bool(globals().get('DOSPLIT', True))
usems = bool(globals().get('USEMS', False))
applyonly = bool(globals().get('applyonly', True))
APPLY_STEPS = ('Import of the ASDM', 'Fix of SYSCAL table times', 'Application of the WVR, Tsys and antpos cal tables',
               'Application of the WVR and Tsys cal tables', 'Split out science SPWs and time average',
               'Save flags before bandpass cal', 'Save flags before gain cal', 'Save flags before applycal',
               'Application of the bandpass and gain cal tables', 'Split out corrected column',
               'Save flags after applycal')


def apply_steps(script):
    """The steps of a calibration script that apply the delivered tables (read off its step_title).
    Total Power scripts run every step, as ALMA's scriptForPI runs them (an empty list: all)."""
    if script.endswith('.ms.scriptForSDCalibration.py'):
        return []
    with open(script) as fh:
        titles = re.findall(r"(\d+)\s*:\s*'([^']*)'", fh.read().split('step_title', 1)[1].split('}', 1)[0])
    return [int(n) for n, title in titles if title in APPLY_STEPS]

if os.path.basename(os.getcwd()) != 'script':
    sys.exit('ERROR: Please start scriptForPI.py from inside the directory named "script" of the delivery.')
for needed in ('../calibration', '../raw'):
    if not os.path.isdir(needed):
        sys.exit('ERROR: directory ' + needed[3:] + ' is missing. Please untar the delivery (and the raw data) first.')
asdms = sorted(os.path.basename(p)[:-len('.asdm.sdm')] for p in glob.glob('../raw/uid*.asdm.sdm'))
if not asdms:
    sys.exit('ERROR: no raw data (uid*.asdm.sdm) found in ../raw. Please untar the raw data tarballs first.')
if os.path.exists('../calibrated') and not usems:
    sys.exit('ERROR: directory ../calibrated already exists. Delete it (or set USEMS=True) and start again.')

restorescripts = sorted(glob.glob('*casa_piperestorescript.py'))
calibrationscripts = sorted(glob.glob('uid*.ms.scriptForCalibration.py') + glob.glob('*uid*.ms.scriptForSDCalibration.py'))
if restorescripts and not calibrationscripts:
    # pipeline-calibrated data: hifa_restoredata applies the delivered calibration in calibrated/working
    if 'hifa_restoredata' not in globals():
        sys.exit('ERROR: this MOUS was calibrated by the ALMA pipeline; start CASA with --pipeline '
                 '(hifa_restoredata is not available in this CASA).')
    os.makedirs('../calibrated/working', exist_ok=True)
    os.makedirs('../calibrated/rawdata', exist_ok=True)
    for asdm in asdms:
        if not os.path.lexists('../calibrated/rawdata/' + asdm):
            os.symlink('../../raw/' + asdm + '.asdm.sdm', '../calibrated/rawdata/' + asdm)
    if not os.path.lexists('../calibrated/products'):
        os.symlink('../calibration', '../calibrated/products')
    os.chdir('../calibrated/working')
    execfile('../../script/' + os.path.basename(restorescripts[0]))
    os.chdir('../../script')
    print('scriptForPI.py done: calibrated data in ../calibrated/working')
    sys.exit(0)

calscripts = {re.search(r'(uid___\w+?)\.ms\.scriptFor(?:SD)?Calibration\.py$', p).group(1): p
              for p in calibrationscripts}
# as scriptForPI v2.x: amplitude-renormalised (ACreNorm) data keep their *.ms (SPACESAVING at most 1)
for calscript in calscripts.values():
    with open(calscript) as fh:
        if savingslevel > 1 and re.search(r'^[^#\n]*\bACreNorm\b', fh.read(), re.M):
            print('This dataset uses ACreNorm: SPACESAVING is reduced to 1.')
            savingslevel = 1
extra_scripts = [s for s in ('scriptForFluxCalibration.py', 'scriptForPolCalibration.py', 'scriptForImagingPrep.py')
                 if os.path.exists(s)]


def _in_raw(command):
    """The fields of the last line a shell tool prints when run inside ../raw (a link is followed)."""
    return subprocess.check_output(command, cwd='../raw', text=True).strip().splitlines()[-1].split()


if savingslevel >= 0:
    # as ALMA's scriptForPI: inside raw/, du (MB, rounded up) and df's "Available" column (MB)
    rawsize = int(_in_raw(['du', '-sm', '.'])[0])
    freespace = int(_in_raw(['df', '-P', '-m', '.'])[3])
    factor = 11 if savingslevel == 0 else 7 if savingslevel == 1 else 3
    if extra_scripts:
        factor += 3
    needed = rawsize * factor
    for line in ('Found %d MB of available free disk space.' % freespace,
                 'Expect to need up to %.1f MB of free disk space.' % needed):
        print(line)
        casalog.post(line)
    if freespace < needed:
        sys.exit('ERROR: not enough free disk space (%d MB free, %.1f MB needed). '
                 'Free some space, use a higher SPACESAVING level, or set SPACESAVING=-1 to skip this check.'
                 % (freespace, needed))

os.makedirs('../calibrated', exist_ok=True)
os.chdir('../calibrated')
done = []
for asdm in asdms:
    if asdm not in calscripts:
        print('ASDM ' + asdm + ' has no calibration script (QA semipass data): skipped.')
        casalog.post('ASDM ' + asdm + ' has no calibration script (QA semipass data): skipped.', 'WARN')
        continue
    if usems and os.path.exists(asdm + '.ms.split.cal'):
        print('Reusing ' + asdm + '.ms.split.cal')
        done.append(asdm)
        continue
    workdir = asdm + '.calibration'
    totalpower = calscripts[asdm].endswith('.ms.scriptForSDCalibration.py')
    if applyonly:
        tables = '../calibration/' + asdm + '.calibration.tgz'
        if not os.path.exists(tables):
            sys.exit('ERROR: ' + tables[3:] + ' is missing: the calibration tables of ' + asdm + ' are needed.')
        with tarfile.open(tables) as tgz:
            tgz.extractall('.')
    os.makedirs(workdir, exist_ok=True)
    os.chdir(workdir)
    if not os.path.lexists(asdm):
        os.symlink('../../raw/' + asdm + '.asdm.sdm', asdm)
    print('Processing ASDM ' + asdm + ' with ' + calscripts[asdm])
    casalog.post('Processing ASDM ' + asdm + ' with ' + calscripts[asdm])
    mysteps = apply_steps('../../script/' + calscripts[asdm]) if applyonly else []
    execfile('../../script/' + calscripts[asdm])
    if totalpower:
        # as ALMA's scriptForPI v2.x: only <EB>.ms.split.cal moves up, and an SD script makes none;
        # its calibrated data (<EB>.ms.cal) stay in calibrated/<EB>.calibration
        print('ERROR: ' + asdm + '.ms.split.cal was not created.')
        os.chdir('..')
        done.append(asdm)
        continue
    if dosplit:
        shutil.move(asdm + '.ms.split.cal', '../' + asdm + '.ms.split.cal')
    else:
        shutil.move(asdm + '.ms.split', '../' + asdm + '.ms.split')
    if savingslevel >= 1:
        shutil.rmtree(asdm + '.ms.split', ignore_errors=True)
    if savingslevel >= 2:
        shutil.rmtree(asdm + '.ms', ignore_errors=True)
    os.chdir('..')
    done.append(asdm)

for asdm in sorted(calscripts):
    if asdm not in asdms:
        print('Calibration script for ' + asdm + ' found, but no ASDM in ../raw: skipped.')
        casalog.post('Calibration script for ' + asdm + ' found, but no ASDM in ../raw: skipped.', 'WARN')

if dosplit and 'scriptForFluxCalibration.py' in extra_scripts:
    print('Running scriptForFluxCalibration.py')
    casalog.post('Running scriptForFluxCalibration.py')
    mysteps = []
    execfile('../script/scriptForFluxCalibration.py')

if savingslevel >= 3 and os.path.exists('calibrated.ms'):
    for asdm in done:
        shutil.rmtree(asdm + '.ms.split.cal', ignore_errors=True)

os.chdir('../script')
print('scriptForPI.py done: calibrated data in ../calibrated')
casalog.post('scriptForPI.py done: calibrated data in ../calibrated')
