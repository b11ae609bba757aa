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
import glob
import os
import shutil
import subprocess
import sys

scriptversion = '2.0-almadeliver'
casalog.post('Running scriptForPI.py version ' + scriptversion)
print('scriptForPI.py version ' + scriptversion)

savingslevel = int(globals().get('SPACESAVING', 0))
dosplit = bool(globals().get('DOSPLIT', True))
usems = bool(globals().get('USEMS', False))

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

calscripts = {p[:-len('.ms.scriptForCalibration.py')]: p for p in sorted(glob.glob('uid*.ms.scriptForCalibration.py'))}
extra_scripts = [s for s in ('scriptForFluxCalibration.py', 'scriptForPolCalibration.py', 'scriptForImagingPrep.py')
                 if os.path.exists(s)]


def _megabytes(text):
    return float(text.split()[0]) / 1024.


if savingslevel >= 0:
    rawsize = _megabytes(subprocess.check_output(['du', '-sk', '../raw'], text=True))
    freelines = subprocess.check_output(['df', '-Pk', '..'], text=True).strip().splitlines()
    freespace = float(freelines[-1].split()[3]) / 1024.
    factor = 11 if savingslevel == 0 else 7 if savingslevel == 1 else 3
    if extra_scripts:
        factor += 3
    needed = rawsize * factor
    print('Found %d MB of available free disk space. Expect to need up to %.1f MB' % (freespace, needed))
    casalog.post('Found %d MB of available free disk space. Expect to need up to %.1f MB' % (freespace, needed))
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
    os.makedirs(workdir, exist_ok=True)
    os.chdir(workdir)
    if not os.path.lexists(asdm):
        os.symlink('../../raw/' + asdm + '.asdm.sdm', asdm)
    print('Processing ASDM ' + asdm + ' with ' + calscripts[asdm])
    casalog.post('Processing ASDM ' + asdm + ' with ' + calscripts[asdm])
    mysteps = []
    execfile('../../script/' + calscripts[asdm])
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
